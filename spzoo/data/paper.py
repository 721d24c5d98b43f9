"""Registry entries for the paper's datasets, read from the user's copy.

CIFAR-10/100 come from a local copy (`$SPZOO_DATA_DIR/cifar10/...`) or, if
there is none, the Keras loader (which downloads when online). Speech
Commands, ESC-50, UrbanSound8K and GTZAN come from their standard folder
layouts under `data_dir=` or `$SPZOO_DATA_DIR/<name>` (default parent
`~/spzoo_data`). Clip lengths are each dataset's most common length, as the
paper prescribes (Table I sizes): 1 s, 5 s, 4 s, 30 s.
"""

import functools
import os

import numpy as np

from spzoo.data import layouts
from spzoo.data.audio_config import AudioConfig
from spzoo.data.preprocessing import AudioPreprocessing, channel_normalization
from spzoo.data.registry import DatasetInfo, register
from spzoo.data.visual import (
    channel_stats,
    check_images,
    crops_dataset,
    read_idx,
    standardize,
)
from spzoo.data.visual import dataset_channel_stats as channel_stats_of

# CIFAR class names, label = index, as in the archives' own `batches.meta`
# (`label_names`) and `meta` (`fine_label_names`). Checked against
# `CIFAR10_CATEGORIES` and `CIFAR100_CATEGORIES` in
# `mmpretrain/datasets/categories.py` (PyPI mmpretrain 1.2.0); the loader
# also compares them with the metadata of the copy it reads.
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR100_CLASSES = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy
    bridge bus butterfly camel can castle caterpillar cattle chair chimpanzee clock
    cloud cockroach couch crab crocodile cup dinosaur dolphin elephant flatfish
    forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion
    lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree
    orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
    porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
    skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table
    tank telephone television tiger tractor train trout tulip turtle wardrobe whale
    willow_tree wolf woman worm""".split()
)
_CIFAR_CLASSES = {10: CIFAR10_CLASSES, 100: CIFAR100_CLASSES}
SPEECH_COMMANDS_CLASSES = tuple(
    """backward bed bird cat dog down eight five follow forward four go happy house
    learn left marvin nine no off on one right seven sheila six stop three tree two
    up visual wow yes zero""".split()
)
ESC50_CLASSES = tuple(
    """dog rooster pig cow frog cat hen insects sheep crow rain sea_waves
    crackling_fire crickets chirping_birds water_drops wind pouring_water
    toilet_flush thunderstorm crying_baby sneezing clapping breathing coughing
    footsteps laughing brushing_teeth snoring drinking_sipping door_wood_knock
    mouse_click keyboard_typing door_wood_creaks can_opening washing_machine
    vacuum_cleaner clock_alarm clock_tick glass_breaking helicopter chainsaw siren
    car_horn engine train church_bells airplane fireworks hand_saw""".split()
)
URBANSOUND8K_CLASSES = (
    "air_conditioner",
    "car_horn",
    "children_playing",
    "dog_bark",
    "drilling",
    "engine_idling",
    "gun_shot",
    "jackhammer",
    "siren",
    "street_music",
)
GTZAN_CLASSES = (
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
)
FMA_GENRES = (
    "Blues",
    "Classical",
    "Country",
    "Easy Listening",
    "Electronic",
    "Experimental",
    "Folk",
    "Hip-Hop",
    "Instrumental",
    "International",
    "Jazz",
    "Old-Time / Historic",
    "Pop",
    "Rock",
    "Soul-RnB",
    "Spoken",
)


def _keras_cifar_cache(classes: int) -> str | None:
    """The folder holding the Keras loader's unpacked CIFAR archive, if any.

    Keras 3 extracts into `<keras home>/datasets/<archive folder>-target/`,
    Keras 2 into `<keras home>/datasets/`; the home is `$KERAS_HOME`, else
    `~/.keras` (`/tmp/.keras` where the home folder is read-only).
    """
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    datasets = os.path.join(home, "datasets")
    sub = layouts.CIFAR_FOLDER[classes]
    for root in (os.path.join(datasets, f"{sub}-target"), datasets):
        if os.path.isdir(os.path.join(root, sub)):
            return root
    return None


def _check_cifar_names(root: str, classes: int) -> None:
    """Raises if the copy's own class names differ from the registered ones."""
    names = layouts.cifar_label_names(root, classes)
    expected = _CIFAR_CLASSES[classes]
    if names is None or names == expected:
        return
    meta = os.path.join(
        layouts.cifar_folder(root, classes), layouts.CIFAR_META[classes][0]
    )
    if len(names) != len(expected):
        raise ValueError(
            f"CIFAR metadata {meta} lists {len(names)} classes; expected "
            f"{len(expected)}."
        )
    i = next(i for i, (a, b) in enumerate(zip(names, expected, strict=True)) if a != b)
    raise ValueError(
        f"CIFAR metadata {meta} names class {i} {names[i]!r}; the registry "
        f"names it {expected[i]!r}. Labels would be misnamed: use the original "
        "python-version archive."
    )


@functools.lru_cache(maxsize=4)
def _cifar_arrays(classes: int, root: str):
    """Normalised CIFAR train and eval arrays (per-channel stats of train)."""
    name = f"cifar{classes}"
    if os.path.isdir(root):
        _check_cifar_names(root, classes)
        train = layouts.cifar_local(root, classes, "train")
        test = layouts.cifar_local(root, classes, "eval")
    else:
        import keras

        module = keras.datasets.cifar10 if classes == 10 else keras.datasets.cifar100
        try:
            (xt, yt), (xe, ye) = module.load_data()
        except Exception as e:  # the download's errors vary by platform
            raise FileNotFoundError(
                f"CIFAR-{classes} has no local copy at {root} "
                f"({layouts.CIFAR_LAYOUT[classes]}) and the Keras loader failed "
                f"(offline?): {e}. Put the python-version archive, unpacked, "
                f"under {root} or set SPZOO_DATA_DIR."
            ) from e
        train, test = (xt, yt.reshape(-1)), (xe, ye.reshape(-1))
        cache = _keras_cifar_cache(classes)
        if cache is not None:
            _check_cifar_names(cache, classes)
    for x, _ in (train, test):
        if x.shape[1:] != (32, 32, 3):
            raise ValueError(
                f"{name} images have shape {x.shape[1:]}; expected (32, 32, 3)."
            )
    mean, std = channel_stats(train[0])
    return (
        (standardize(train[0], mean, std), train[1].astype("int32")),
        (standardize(test[0], mean, std), test[1].astype("int32")),
        (mean, std),
    )


def _cifar_check(classes: int):
    def check():
        root = layouts.data_root(f"cifar{classes}")
        if os.path.isdir(root) or _keras_cifar_cache(classes) is not None:
            return None
        return f"no copy at {root}; the Keras loader downloads it when online"

    return check


def _cifar_loader(classes: int):
    def loader(split: str, data_dir: str | None = None):
        root = layouts.data_root(f"cifar{classes}", data_dir)
        train, test, _ = _cifar_arrays(classes, root)
        return train if split == "train" else test

    return loader


def _cifar_preprocessing(classes: int):
    """Per-channel normalisation by the statistics of the copy's train images."""

    def preprocessing(data_dir: str | None = None):
        root = layouts.data_root(f"cifar{classes}", data_dir)
        mean, std = _cifar_arrays(classes, root)[2]
        return channel_normalization((32, 32, 3), mean, std)

    return preprocessing


for _classes, _names in _CIFAR_CLASSES.items():
    register(
        DatasetInfo(
            name=f"cifar{_classes}",
            input_shape=(32, 32, 3),
            class_names=_names,
            description=f"CIFAR-{_classes}: 50000/10000 colour 32x32 images; "
            "per-channel mean/variance normalisation (train statistics); "
            "predefined split; the class names are checked against the copy's "
            "own metadata file.",
            source=f"Local copy under $SPZOO_DATA_DIR/cifar{_classes} "
            f"({layouts.CIFAR_LAYOUT[_classes]}), else keras.datasets "
            f"(downloads from cs.toronto.edu)",
            loader=_cifar_loader(_classes),
            preprocessing=_cifar_preprocessing(_classes),
            check=_cifar_check(_classes),
            sizes={"train": 50000, "eval": 10000},
            paper=True,
        )
    )


def _audio_entry(
    name: str,
    reader,
    classes: tuple,
    clip_seconds: float,
    expected_rate: int | None,
    title: str,
    layout: str,
    split_note: str,
    cache_default: bool = True,
):
    config = AudioConfig(clip_seconds=clip_seconds)

    def loader(
        split: str,
        data_dir: str | None = None,
        on_error: str = "raise",
        cache: bool | str = cache_default,
    ):
        from spzoo.data import audio

        paths, labels = reader(layouts.data_root(name, data_dir), split, classes)
        return audio.from_files(paths, labels, config, on_error, expected_rate, cache)

    def check():
        root = layouts.data_root(name)
        return None if os.path.isdir(root) else f"not found at {root}"

    d = config.image_size
    pieces = f", {config.num_pieces} x 5 s pieces" if config.num_pieces > 1 else ""
    register(
        DatasetInfo(
            name=name,
            input_shape=config.input_shape,
            class_names=classes,
            description=f"{title}: clip/pad to {clip_seconds:g} s{pieces}, 16 kHz, "
            f"log-Mel ({config.num_mels} mels, window 512, hop 256) -> {d}x{d}; "
            f"{split_note}.",
            source=f"Your copy under $SPZOO_DATA_DIR/{name} or data_dir= ({layout})",
            loader=loader,
            modality="audio",
            preprocessing=AudioPreprocessing.from_config(config),
            check=check,
            paper=True,
        )
    )


_audio_entry(
    "speech_commands",
    layouts.speech_commands,
    SPEECH_COMMANDS_CLASSES,
    1.0,
    16000,
    "Speech Commands v0.02 (35 words; v0.01 folders also load)",
    layouts.SPEECH_COMMANDS_LAYOUT,
    "train = not in the validation/testing lists, eval = testing_list.txt",
)
_audio_entry(
    "esc50",
    layouts.esc50,
    ESC50_CLASSES,
    5.0,
    44100,
    "ESC-50 environmental sounds (50 classes)",
    layouts.ESC50_LAYOUT,
    "folds 1-4 train, fold 5 eval",
)
_audio_entry(
    "urbansound8k",
    layouts.urbansound8k,
    URBANSOUND8K_CLASSES,
    4.0,
    None,
    "UrbanSound8K (10 classes)",
    layouts.URBANSOUND8K_LAYOUT,
    "folds 1-8 train, folds 9-10 eval",
)
_audio_entry(
    "gtzan",
    layouts.gtzan,
    GTZAN_CLASSES,
    30.0,
    22050,
    "GTZAN music genres (10 classes)",
    layouts.GTZAN_LAYOUT,
    "random 80/20 split of the files of each genre (seed 0)",
)
_audio_entry(
    "fma_medium",
    layouts.fma,
    FMA_GENRES,
    30.0,
    None,
    "FMA medium (25000 tracks, 16 top genres; MP3 via libsndfile)",
    layouts.FMA_LAYOUT,
    "random 80/20 split of the tracks of each genre (seed 0); not cached by "
    "default (about 10 GB of images): pass cache=True or a file prefix",
    cache_default=False,
)


# Best Artworks of All Time (Kaggle, ikarus777/best-artworks-of-all-time):
# its 50 artist folders, sorted, label = index. No maintained copy of the
# archive's `artists.csv` or folder list was found on PyPI, npm or Debian, so
# these names are unchecked; `layouts.artworks` matches folders to them
# (ignoring case, accents and punctuation) and fails naming any folder that
# matches none.
BEST_ARTWORKS_CLASSES = tuple(
    """Albrecht_Durer Alfred_Sisley Amedeo_Modigliani Andrei_Rublev Andy_Warhol
    Camille_Pissarro Caravaggio Claude_Monet Diego_Rivera Diego_Velazquez
    Edgar_Degas Edouard_Manet Edvard_Munch El_Greco Eugene_Delacroix
    Francisco_Goya Frida_Kahlo Georges_Seurat Giotto_di_Bondone Gustav_Klimt
    Gustave_Courbet Henri_Matisse Henri_Rousseau Henri_de_Toulouse-Lautrec
    Hieronymus_Bosch Jackson_Pollock Jan_van_Eyck Joan_Miro Kazimir_Malevich
    Leonardo_da_Vinci Marc_Chagall Michelangelo Mikhail_Vrubel Pablo_Picasso
    Paul_Cezanne Paul_Gauguin Paul_Klee Peter_Paul_Rubens Pierre-Auguste_Renoir
    Piet_Mondrian Pieter_Bruegel Raphael Rembrandt Rene_Magritte Salvador_Dali
    Sandro_Botticelli Titian Vasiliy_Kandinsky Vincent_van_Gogh
    William_Turner""".split()
)
# WikiArt as released with ArtGAN (github.com/cs-chan/ArtGAN, `wikiart.zip`):
# its 27 style folders, label = index, in the order of that repository's
# `WikiArt Dataset/Style/style_class.txt` (ids 0-26, checked at commit
# 0dbd69c4). That file names class 3 "Art_Nouveau"; the archive's folder, and
# so this name, is "Art_Nouveau_Modern" (as in its `style_train.csv`).
WIKIART_CLASSES = tuple(
    """Abstract_Expressionism Action_painting Analytical_Cubism Art_Nouveau_Modern
    Baroque Color_Field_Painting Contemporary_Realism Cubism Early_Renaissance
    Expressionism Fauvism High_Renaissance Impressionism Mannerism_Late_Renaissance
    Minimalism Naive_Art_Primitivism New_Realism Northern_Renaissance Pointillism
    Pop_Art Post_Impressionism Realism Rococo Romanticism Symbolism
    Synthetic_Cubism Ukiyo_e""".split()
)


@functools.lru_cache(maxsize=4)
def _artwork_stats(name: str, root: str, classes: tuple):
    """Per-channel statistics of the train crops (one decoding pass)."""
    paths, labels = layouts.artworks(root, "train", classes)
    return channel_stats_of(crops_dataset(paths, labels))


def _artwork_entry(name: str, title: str, classes: tuple, class_note: str):
    def loader(split: str, data_dir: str | None = None):
        import tensorflow as tf

        root = layouts.data_root(name, data_dir)
        mean, std = _artwork_stats(name, root, classes)
        paths, labels = layouts.artworks(root, split, classes)
        if not paths:
            raise FileNotFoundError(f"No {split} images for {name} under {root}.")
        return crops_dataset(paths, labels).map(
            lambda x, y: ((x - mean) / std, y), num_parallel_calls=tf.data.AUTOTUNE
        )

    def check():
        root = layouts.data_root(name)
        return None if os.path.isdir(root) else f"not found at {root}"

    def preprocessing(data_dir: str | None = None):
        # The crops are decoded 8-bit pixels: statistics in pixel units.
        mean, std = _artwork_stats(name, layouts.data_root(name, data_dir), classes)
        return channel_normalization((64, 64, 3), mean, std)

    register(
        DatasetInfo(
            name=name,
            input_shape=(64, 64, 3),
            class_names=classes,
            description=f"{title}: five 64x64 crops per image (corners, centre), "
            "each an example; per-channel mean/variance normalisation (train "
            "crops); random 80/20 split of each class's images (seed 0). "
            f"Classes: {class_note}; a folder is matched to its class by name "
            "(ignoring case, accents and punctuation), label = index in "
            "class_names, and a folder matching none is an error.",
            source=f"Your copy under $SPZOO_DATA_DIR/{name} or data_dir= "
            f"({layouts.ARTWORKS_LAYOUT})",
            loader=loader,
            check=check,
            preprocessing=preprocessing,
            paper=True,
        )
    )


_artwork_entry(
    "best_artworks",
    "Best Artworks of All Time (50 artists)",
    BEST_ARTWORKS_CLASSES,
    "the 50 artist folders of the Kaggle archive, sorted (these names were "
    "not checked against an authoritative copy of the archive; the labels "
    "follow this list, whatever the order of your folders)",
)
_artwork_entry(
    "wikiart",
    "WikiArt (27 style folders, ArtGAN layout)",
    WIKIART_CLASSES,
    "the 27 style folders of ArtGAN's wikiart.zip in the order of its "
    "style_class.txt (ids 0-26; its class 3 'Art_Nouveau' is the folder "
    "Art_Nouveau_Modern)",
)


EMNIST_CLASSES = tuple("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
EMNIST_LAYOUT = (
    "<root>/gzip/emnist-byclass-{train,test}-{images-idx3,labels-idx1}-ubyte.gz "
    "(or the files directly in <root>)"
)


def _emnist(split: str, data_dir: str | None = None):
    import tensorflow as tf

    root = layouts.data_root("emnist", data_dir)
    layouts.require(root, "EMNIST folder", EMNIST_LAYOUT)
    if os.path.isdir(os.path.join(root, "gzip")):
        root = os.path.join(root, "gzip")
    part = "train" if split == "train" else "test"
    images = os.path.join(root, f"emnist-byclass-{part}-images-idx3-ubyte.gz")
    x = read_idx(layouts.require(images, "EMNIST images", EMNIST_LAYOUT))
    y = read_idx(
        layouts.require(
            os.path.join(root, f"emnist-byclass-{part}-labels-idx1-ubyte.gz"),
            "EMNIST labels",
            EMNIST_LAYOUT,
        )
    )
    check_images(x, (28, 28), images)
    if len(x) != len(y) or (len(y) and int(y.max()) >= len(EMNIST_CLASSES)):
        raise ValueError(
            f"{images}: {len(x)} images, {len(y)} labels (max {int(y.max())}); "
            f"expected equal counts and labels < {len(EMNIST_CLASSES)}."
        )
    # EMNIST stores images transposed; kept as uint8 until the pipeline.
    x = np.ascontiguousarray(x.transpose(0, 2, 1))[..., None]
    ds = tf.data.Dataset.from_tensor_slices((x, y.astype("int32")))
    return ds.map(
        lambda image, label: (tf.cast(image, tf.float32) / 255.0, label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _emnist_check():
    root = layouts.data_root("emnist")
    return None if os.path.isdir(root) else f"not found at {root}"


register(
    DatasetInfo(
        name="emnist",
        flip_augment=False,
        input_shape=(28, 28, 1),
        class_names=EMNIST_CLASSES,
        description="EMNIST ByClass: 697932/116323 greyscale 28x28 digits and "
        "letters (62 classes); [0,1] scaling; predefined split.",
        source=f"Your copy under $SPZOO_DATA_DIR/emnist or data_dir= ({EMNIST_LAYOUT})",
        loader=_emnist,
        sizes={"train": 697932, "eval": 116323},
        check=_emnist_check,
        paper=True,
    )
)
