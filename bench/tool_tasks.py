"""A held-out tool-calling set written for this project (no public benchmark's file): twelve
realistic function signatures, 100 questions that each need one call (with the call expected),
and 50 questions that no offered tool fits (the right answer is text). Each task offers its
tool among three others, as an app would offer a handful."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

ANY = object()  # an argument that must be there, whatever its text (an email's body)


def _fn(name: str, description: str, props: dict[str, Any], required: list[str],
        ) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description,
            "parameters": {"type": "object", "properties": props, "required": required}}}


STR, INT, NUM = {"type": "string"}, {"type": "integer"}, {"type": "number"}
TOOLS = {t["function"]["name"]: t for t in [
    _fn("get_weather", "Current weather for a city",
        {"city": STR, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, ["city"]),
    _fn("convert_currency", "Convert an amount between currencies (ISO codes like USD)",
        {"amount": NUM, "from_currency": STR, "to_currency": STR},
        ["amount", "from_currency", "to_currency"]),
    _fn("search_files", "Search the files of the current repository for a text pattern",
        {"pattern": STR, "path": STR}, ["pattern"]),
    _fn("create_event", "Add an event to the calendar",
        {"title": STR, "date": {"type": "string", "description": "YYYY-MM-DD"},
         "time": {"type": "string", "description": "HH:MM, 24-hour"}}, ["title", "date"]),
    _fn("send_email", "Send an email", {"to": STR, "subject": STR, "body": STR},
        ["to", "subject", "body"]),
    _fn("set_timer", "Start a countdown timer", {"minutes": INT}, ["minutes"]),
    _fn("translate", "Translate text into another language",
        {"text": STR, "target_language": STR}, ["text", "target_language"]),
    _fn("get_stock_price", "Latest price of a stock by its ticker symbol", {"symbol": STR},
        ["symbol"]),
    _fn("book_flight", "Book a flight", {"origin": STR, "destination": STR,
                                          "date": {"type": "string", "description": "YYYY-MM-DD"}},
        ["origin", "destination", "date"]),
    _fn("git_log", "Show recent commits of the repository", {"count": INT, "author": STR},
        ["count"]),
    _fn("calculate_tip", "Tip for a restaurant bill", {"bill": NUM, "percent": NUM},
        ["bill", "percent"]),
    _fn("play_music", "Play music by an artist", {"artist": STR, "song": STR}, ["artist"]),
]}


@dataclass(frozen=True)
class Task:
    question: str
    tools: list[str]  # offered, by name
    name: str | None  # the expected call's function (None: no call)
    arguments: dict[str, Any] = field(default_factory=dict)


_CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("get_weather", "What's the weather like in {city} right now?",
     {"city": ["Lyon",
      "Oslo",
      "Nairobi",
      "Kyoto",
      "Lima"]}),
    ("get_weather", "Is it cold in {city}? Tell me in {unit}.",
     {"city": ["Montreal",
      "Bergen"],
      "unit": ["celsius",
      "fahrenheit"]}),
    ("convert_currency", "How much is {amount} {from_currency} in {to_currency}?",
     {"amount": [50, 1200, 7.5],
      "from_currency": ["USD",
      "EUR"],
      "to_currency": ["JPY",
      "GBP"]}),
    ("convert_currency", "Convert {amount} {from_currency} to {to_currency} please.",
     {"amount": [300, 99.99],
      "from_currency": ["CHF",
      "CAD"],
      "to_currency": ["EUR"]}),
    ("search_files", "Which files in this repo mention {pattern}?",
     {"pattern": ["postprocess",
      "TODO",
      "deprecated",
      "api_key"]}),
    ("search_files", "Find '{pattern}' in the {path} folder.",
     {"pattern": ["import numpy",
      "def main"],
      "path": ["src",
      "tests"]}),
    ("create_event", "Put '{title}' in my calendar on {date} at {time}.",
     {"title": ["Dentist",
      "Team sync",
      "Call mum"],
      "date": ["2026-12-03",
      "2027-01-15"],
      "time": ["09:30",
      "14:00"]}),
    ("create_event", "Add an event called {title} on {date}.",
     {"title": ["Rent due",
      "Marathon"],
      "date": ["2026-12-01",
      "2027-04-20"]}),
    ("send_email", "Email {to} with the subject '{subject}' and tell them the report is ready.",
     {"to": ["ana@example.com",
      "li.wei@example.org"],
      "subject": ["Report",
      "Q3 numbers"]}),
    ("send_email", "Send a mail to {to}, subject {subject}, saying I will be late.",
     {"to": ["boss@example.com"],
      "subject": ["Running late",
      "Delay"]}),
    ("set_timer", "Set a timer for {minutes} minutes.", {"minutes": [5, 12, 25, 45]}),
    ("set_timer", "Remind me in {minutes} minutes with a countdown.", {"minutes": [3, 90]}),
    ("translate", "Translate '{text}' into {target_language}.",
     {"text": ["Where is the station?",
      "Thank you very much",
      "The meeting is cancelled"],
      "target_language": ["French",
      "Japanese",
      "German"]}),
    ("get_stock_price", "What's {symbol} trading at?", {"symbol": ["AAPL", "MSFT", "NVDA", "TSLA"]}),
    ("get_stock_price", "Give me the latest share price of ticker {symbol}.", {"symbol": ["AMZN", "ASML"]}),
    ("book_flight", "Book me a flight from {origin} to {destination} on {date}.",
     {"origin": ["Paris",
      "Boston",
      "Madrid"],
      "destination": ["Tokyo",
      "Denver"],
      "date": ["2027-02-10",
      "2026-12-24"]}),
    ("git_log", "Show the last {count} commits.", {"count": [5, 10, 3]}),
    ("git_log", "List the {count} most recent commits by {author}.",
     {"count": [4, 20],
      "author": ["alice",
      "bob"]}),
    ("calculate_tip", "What's a {percent}% tip on a {bill} dollar bill?",
     {"percent": [15, 18, 20],
      "bill": [64, 120.5]}),
    ("play_music", "Play some {artist}.", {"artist": ["Miles Davis", "Björk", "Daft Punk"]}),
    ("play_music", "Play {song} by {artist}.",
     {"song": ["Hey Jude",
      "Clair de Lune"],
      "artist": ["The Beatles",
      "Debussy"]}),
]

_NO_CALL = [
    "What does HTTP stand for?", "Write a haiku about autumn leaves.",
    "Explain recursion in one sentence.", "What is the capital of Australia?",
    "Write a Python function that reverses a string.", "Why is the sky blue?",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "What is the difference between a list and a tuple in Python?",
    "Give me three tips for better sleep.", "How many legs does a spider have?",
    "What year did the Berlin Wall fall?", "Suggest a name for a grey cat.",
    "What is 17 times 23?", "Explain what a hash map is.",
    "Write a limerick about a programmer.", "What is photosynthesis?",
    "How do I exit Vim?", "What does the `git rebase` command do?",
    "Tell me a fun fact about octopuses.", "What is the boiling point of water at sea level?",
    "Describe the smell of rain in one sentence.", "What is a prime number?",
    "Write a SQL query that counts the rows of a table named users.",
    "Who wrote 'Pride and Prejudice'?", "What is the plural of 'cactus'?",
    "Explain big-O notation briefly.", "What is the speed of light?",
    "Give me a synonym for 'happy'.", "What does CPU stand for?",
    "How do I make a cup of green tea?", "What is the tallest mountain on Earth?",
    "Write a short apology for missing a meeting.", "What is a closure in JavaScript?",
    "Name three primary colours.", "What is the square root of 144?",
    "Explain what an API is to a child.", "What language is spoken in Brazil?",
    "Write a regular expression that matches an email address.",
    "What causes the seasons on Earth?", "Suggest a title for a blog post about gardening.",
    "What is the difference between weather and climate?", "How many bytes are in a kilobyte?",
    "Explain the word 'serendipity'.", "What is the chemical symbol for gold?",
    "Write a one-line motivational quote.", "What does 'idempotent' mean?",
    "How many continents are there?", "What is a linked list?",
    "Give an example of a palindrome.", "Why do cats purr?",
]


def tasks(seed: int = 7) -> list[Task]:
    rng = random.Random(seed)
    names = list(TOOLS)
    out: list[Task] = []
    i = 0
    while len(out) < 100:
        name, text, values = _CALLS[i % len(_CALLS)]
        chosen = {k: v[(i // len(_CALLS) + j) % len(v)] for j, (k, v) in enumerate(values.items())}
        args = dict(chosen)
        if name == "send_email":
            args["body"] = ANY
        others = rng.sample([n for n in names if n != name], 3)
        offered = rng.sample([name, *others], 4)
        out.append(Task(text.format(**chosen), offered, name, args))
        i += 1
    for q in _NO_CALL:
        out.append(Task(q, rng.sample(names, 4), None))
    return out


def right(task: Task, name: str | None, arguments: dict[str, Any]) -> bool:
    """The expected function, and each expected argument (text compared loosely: case,
    spaces, a trailing full stop; numbers by value)."""
    if name != task.name:
        return False
    for key, want in task.arguments.items():
        got = arguments.get(key)
        if want is ANY:
            if not isinstance(got, str) or not got.strip():
                return False
        elif isinstance(want, (int, float)) and not isinstance(want, bool):
            if not isinstance(got, (int, float)) or abs(float(got) - float(want)) > 1e-6:
                return False
        elif str(got).strip().rstrip(".").lower() != str(want).strip().rstrip(".").lower():
            return False
    return True
