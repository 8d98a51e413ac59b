"""Day 54: a small labelled text set the project writes itself — short sentences about one of three
topics (sports, weather, food), drawn from templates with a seeded generator. Nothing is downloaded.

Each topic has its own words (subjects, verbs, objects). The **test** split draws its topic words from
a held-out part of each list, never seen in training, so a classifier can only score well on it by
knowing what the words mean — which is what a pre-trained encoder (all-MiniLM-L6-v2 on day 54) brings.
The filler words (times, places) are shared by all topics and carry no label.
"""
from __future__ import annotations

import numpy as np

#: The class names, in label order.
TOPICS = ("sports", "weather", "food")
#: Per topic: (subjects, verbs, objects). The last HELD_OUT of each list appear only in the test split.
WORDS = {
    "sports": (["the striker", "our goalkeeper", "the team captain", "a young sprinter", "the coach", "the tennis player",
                "the referee", "the boxer"],
               ["scored", "won", "kicked", "defended", "trained for", "lost", "celebrated", "qualified for"],
               ["the final match", "a penalty", "the championship", "the league title", "a gold medal", "the tournament",
                "the derby", "the relay race"]),
    "weather": (["the forecast", "a cold front", "the storm", "heavy rain", "the morning fog", "a strong wind",
                 "the thunder", "the snowfall"],
                ["brought", "flooded", "covered", "cooled", "soaked", "froze", "battered", "darkened"],
                ["the valley", "the coast", "the northern hills", "every street", "the harbour", "the old bridge",
                 "the mountain pass", "the plains"]),
    "food": (["the chef", "my grandmother", "the baker", "a hungry student", "the waiter", "the cook",
              "the pastry chef", "the butcher"],
             ["baked", "roasted", "seasoned", "served", "tasted", "grilled", "simmered", "sliced"],
             ["a loaf of bread", "the vegetable soup", "a chocolate cake", "the pasta", "a spicy curry", "the salad",
              "the pancakes", "the roast chicken"]),
}
#: Words per list kept for the test split only.
HELD_OUT = 3
#: Topic-free endings shared by every class.
ENDINGS = ("yesterday", "this morning", "last night", "on sunday", "again", "in the city", "before noon", "today")
SPLITS = ("train", "test")


def topic_sentences(count_per_topic: int, split: str, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``count_per_topic`` sentences per topic of ``split`` (``"train"`` or ``"test"``) and their labels
    ``(N,)`` int64 (the index in :data:`TOPICS`), topics interleaved, the same for the same seed."""
    if split not in SPLITS:
        raise ValueError(f"topic_sentences: split must be one of {', '.join(SPLITS)}, got {split!r}")
    if isinstance(count_per_topic, bool) or not isinstance(count_per_topic, int) or count_per_topic < 1:
        raise ValueError(f"topic_sentences: count_per_topic must be an int >= 1, got {count_per_topic!r}")
    # The test split draws from its own stream: changing the training count does not change the test set.
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    sentences, labels = [], []
    for _ in range(count_per_topic):
        for label, topic in enumerate(TOPICS):
            words = [part[:-HELD_OUT] if split == "train" else part[-HELD_OUT:] for part in WORDS[topic]]
            subject, verb, obj = (part[rng.integers(len(part))] for part in words)
            sentences.append(f"{subject} {verb} {obj} {ENDINGS[rng.integers(len(ENDINGS))]}.")
            labels.append(label)
    return sentences, np.array(labels, dtype=np.int64)
