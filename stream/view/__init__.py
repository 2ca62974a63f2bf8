"""The live view: every stream's overlay, what it hears, fps, latency and drops, in a browser.

stream/view/feed.py is the sink's side (a PUB that never waits), stream/view/server.py the page's
(an aiohttp server that subscribes to every sink's feed), stream/view/page.html the page itself.
"""
