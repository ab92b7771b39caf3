"""Training augmentation and evaluation preprocessing, one module per thing that is augmented:

tensors  one uint8 image tensor at a time (the CIFAR-LT recipe, in DataLoader workers)
batch    a whole uint8 batch on its device (the same recipe, without per-sample workers)
images   one decoded image file at a time (the large-scale recipe, built with timm)
"""
