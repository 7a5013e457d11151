"""Texts of the evaluation set's second batch (``make_eval_set.py``): commands written
here, sentences made from templates with seeded fills, and plain sentences of the Python
standard library's docstrings. None is a text of the first batch."""

from __future__ import annotations

import importlib
import inspect
import random
import re
import sys
import warnings

ONE_S = [
    "Pause the music.",
    "Next track.",
    "Volume up.",
    "Turn on the fan.",
    "Call home.",
    "Open the window.",
    "Stop the alarm.",
    "Lights on.",
    "Call my sister.",
    "Unlock the car.",
    "Read the news.",
    "Take a photo.",
    "Start the kettle.",
    "Feed the cat.",
    "Close the curtains.",
    "Louder please.",
    "Text my brother.",
    "Clear the list.",
    "Good night.",
    "Open my email.",
    "Lower the heat.",
    "Call Doctor Adams.",
    "Print this page.",
    "Save the file.",
    "Check the weather.",
    "Pause the movie.",
    "Turn left here.",
    "Show my photos.",
]
NAMES = [
    "Maria",
    "Oliver",
    "Priya",
    "Tom Baker",
    "Aunt Helen",
    "Mister Okafor",
    "Lucy",
    "Carlos",
    "Doctor Brennan",
    "Hannah",
]
CITIES = ["Glasgow", "Toronto", "Lisbon", "Berlin", "Dublin", "Chicago", "Melbourne", "Oslo", "Cardiff", "Boston"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
HOURS = [
    "seven o'clock",
    "half past six",
    "noon",
    "a quarter to nine",
    "ten thirty",
    "five in the evening",
    "eight fifteen",
]
NUMBERS = ["two", "five", "twelve", "fifteen", "twenty", "thirty five", "forty", "ninety", "three hundred"]
ITEMS = ["milk", "coffee beans", "batteries", "olive oil", "paper towels", "green apples", "dog food", "rice"]
TASKS = [
    "call the bank",
    "water the plants",
    "pay the electricity bill",
    "buy a birthday card",
    "return the library books",
    "book the dentist",
    "charge the camera",
]
EVENTS = ["meeting", "dinner", "rehearsal", "football match", "job interview", "school play", "team lunch"]
PLACES = [
    "the station",
    "the town hall",
    "the airport",
    "my office",
    "the hospital",
    "the old harbour",
    "the university",
]
ROOMS = ["kitchen", "bedroom", "garage", "living room", "study", "hallway"]
TEMPLATES = {
    3: [
        "Set a timer for {number} minutes.",
        "Call {name} on {day} morning.",
        "What is the weather in {city} today?",
        "Remind me to {task}.",
        "Add {item} to the shopping list.",
        "Book a taxi to {place}.",
        "Turn off the lights in the {room}.",
    ],
    5: [
        "Please tell {name} that the {event} on {day} has moved to {hour}.",
        "Remind me to {task} before I leave for {city} on {day}.",
        "Send {number} dollars to {name} and add a note about the {event}.",
        "How long does it take to drive from {place} to {city} on {day}?",
        "Order {number} packs of {item} and deliver them to the {room}.",
    ],
    7: [
        "Please send a message to {name} saying that the {event} on {day} will start at {hour} in the {room}.",
        "Before we drive to {city} on {day}, remind me to {task} and to buy some {item} on the way.",
        "Could you order {number} bags of {item} and have them delivered to {place} by {hour} on {day}?",
        "Tell {name} that I cannot make the {event} in {city}, and ask whether {day} at {hour} works instead.",
    ],
}
SLOTS = {
    "name": NAMES,
    "city": CITIES,
    "day": DAYS,
    "hour": HOURS,
    "number": NUMBERS,
    "item": ITEMS,
    "task": TASKS,
    "event": EVENTS,
    "place": PLACES,
    "room": ROOMS,
}
FOREIGN = {  # language -> (espeak voice, [3 s sentence, 3 s, 5 s, 5 s])
    "it": (
        "it",
        [
            "Vorrei un biglietto per Roma.",
            "Il negozio apre alle nove.",
            "Domani mattina andiamo al mercato a comprare frutta e verdura fresca.",
            "La riunione di lunedì è stata spostata alle quattro del pomeriggio.",
        ],
    ),
    "pt": (
        "pt",
        [
            "Onde fica a farmácia mais próxima?",
            "Hoje está muito frio lá fora.",
            "Vamos jantar em casa dos meus pais no sábado à noite.",
            "O autocarro para o centro da cidade passa de quinze em quinze minutos.",
        ],
    ),
    "nl": (
        "nl",
        [
            "Hoe laat vertrekt de trein?",
            "Ik heb vandaag geen tijd.",
            "Wij gaan in de zomer met de fiets naar de kust van Zeeland.",
            "De bakker op de hoek verkoopt het lekkerste brood van de stad.",
        ],
    ),
}
PLAIN = re.compile(r"^[A-Z][A-Za-z ,;'\-]+[a-z]\.$")
CAMEL = re.compile(r"[a-z][A-Z]")  # names like LookupError: read as one word, written as two or not
SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "pydoc", "webbrowser", "lib2to3"}


def templated(rng: random.Random, length: int) -> str:
    """A sentence of the ``length`` s templates, its slots filled at random."""
    return rng.choice(TEMPLATES[length]).format(**{k: rng.choice(v) for k, v in SLOTS.items()})


def docstring_sentences(low: int, high: int) -> list[str]:
    """Plain sentences of ``low``-``high`` words in the docstrings of the standard
    library's public modules, classes and functions (this Python's; sorted)."""
    found = set()
    names = sorted(n for n in sys.stdlib_module_names if not n.startswith("_") and n not in SKIP)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            try:
                module = importlib.import_module(name)
            except BaseException:  # noqa: BLE001 - platform modules fail in their own ways
                continue
            docs = [module.__doc__]
            for attr in dir(module):
                obj = getattr(module, attr, None)
                if inspect.isfunction(obj) or inspect.isclass(obj):
                    docs.append(obj.__doc__)
            for doc in docs:
                for paragraph in re.split(r"\n\s*\n", doc if isinstance(doc, str) else ""):
                    for sentence in re.split(r"(?<=\.)\s+", " ".join(paragraph.split())):
                        if (
                            PLAIN.match(sentence)
                            and low <= len(sentence.split()) <= high
                            and "- " not in sentence
                            and not CAMEL.search(sentence)
                        ):
                            found.add(sentence)
    return sorted(found)
