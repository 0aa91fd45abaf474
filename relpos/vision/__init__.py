"""Images: in-memory and folder datasets (:mod:`~relpos.vision.datasets`), CIFAR files
(:mod:`~relpos.vision.cifar`), offline sets (:mod:`~relpos.vision.bundled`), datasets by name
(:mod:`~relpos.vision.registry`), normalisation and batch augmentation
(:mod:`~relpos.vision.augment`) and the image experiment (:mod:`~relpos.vision.experiment`,
not imported here: it needs the training package)."""

from relpos.vision.augment import (
    channel_stats,
    make_augment,
    normalize,
    random_crop,
    random_flip,
)
from relpos.vision.bundled import load_digits, load_mnist5k, load_sample_images
from relpos.vision.cifar import load_cifar
from relpos.vision.datasets import (
    ArrayImageDataset,
    ImageDataset,
    ImageFolderDataset,
    split_per_class,
    train_test_split_indices,
)
from relpos.vision.registry import list_image_datasets, load_image_dataset, register_image_dataset
from relpos.vision.streaming import StreamingImageFolder, load_image_folder

__all__ = [
    "ArrayImageDataset",
    "ImageDataset",
    "ImageFolderDataset",
    "StreamingImageFolder",
    "channel_stats",
    "list_image_datasets",
    "load_cifar",
    "load_digits",
    "load_image_dataset",
    "load_image_folder",
    "load_mnist5k",
    "load_sample_images",
    "make_augment",
    "normalize",
    "random_crop",
    "random_flip",
    "register_image_dataset",
    "split_per_class",
    "train_test_split_indices",
]
