"""A hand-made PRISM folder small enough to check every pair by hand (see test_preferences)."""

from __future__ import annotations

import json
from pathlib import Path


def survey_row(i: int, **over) -> dict:
    """One survey record in PRISM's layout (nested ethnicity/religion/location)."""
    row = {
        "user_id": f"user{i}", "survey_only": False, "num_completed_conversations": 1, "consent": "Yes",
        "age": "25-34 years old", "gender": "Female", "employment_status": "Student",
        "education": "University Bachelors Degree", "marital_status": "Never been married",
        "english_proficiency": "Native speaker", "study_id": "s", "study_locale": "us",
        "religion": {"self_described": "none", "categorised": "No Affiliation", "simplified": "No Affiliation"},
        "ethnicity": {"self_described": "white", "categorised": "White", "simplified": "White"},
        "location": {"reside_country": "United States", "reside_countryISO": "USA", "special_region": "US"},
        "included_in_US_REP": False, "included_in_UK_REP": False, "included_in_balanced_subset": True,
        "lm_frequency_use": None, "an_unknown_future_field": [1, 2],
    }
    row.update(over)
    return row


def utt(uid, cid, turn, within, user, prompt, text, score, chosen, model="gpt-4") -> dict:
    return {"utterance_id": f"ut{uid}", "interaction_id": f"int-{cid}-{turn}", "conversation_id": cid,
            "user_id": user, "turn": turn, "within_turn_id": within, "included_in_balanced_subset": True,
            "conversation_type": "unguided", "user_prompt": prompt, "model_response": text, "model_name": model,
            "model_provider": "openai", "score": score, "if_chosen": chosen}


UTTERANCES = [
    # c0 turn 0: A 80 (chosen), B 60, C 60 (tie with B), EMPTY STRING 10
    utt(0, "c0", 0, 2, "user0", "Hello?", "Answer A", 80, True, "gpt-4"),
    utt(1, "c0", 0, 0, "user0", "Hello?", "Answer B", 60, False, "claude-2"),
    utt(2, "c0", 0, 3, "user0", "Hello?", "Answer C", 60, False, "command"),
    utt(3, "c0", 0, 1, "user0", "Hello?", "EMPTY STRING", 10, False, "models/chat-bison-001"),
    # c0 turn 1: identical A/B texts, both flagged chosen
    utt(4, "c0", 1, 0, "user0", "And then?", "Same text", 50, True),
    utt(5, "c0", 1, 1, "user0", "And then?", "Same text", 50, True),
    # c0 turn 2: one pair, whose prompt carries turns 0 and 1
    utt(6, "c0", 2, 1, "user0", "Finally?", "Good end", 70, True),
    utt(7, "c0", 2, 0, "user0", "Finally?", "Bad end", 40, False),
    # c1 turn 0 (user1, US-REP): three distinct scores -> three pairs
    utt(8, "c1", 0, 0, "user1", "Hi there", "R1", 50, False, "gpt-4"),
    utt(9, "c1", 0, 1, "user1", "Hi there", "R2", 55, False, "claude-2"),
    utt(10, "c1", 0, 2, "user1", "Hi there", "R3", 90, True, "command"),
]


def history(cid: str) -> list[dict]:
    """conversation_history for a conversation, from UTTERANCES (role `model`, all responses)."""
    out = []
    for turn in sorted({u["turn"] for u in UTTERANCES if u["conversation_id"] == cid}):
        rows = [u for u in UTTERANCES if u["conversation_id"] == cid and u["turn"] == turn]
        out.append({"turn": turn, "role": "user", "content": rows[0]["user_prompt"]})
        out += [{"turn": turn, "role": "model", "content": u["model_response"], "model_provider": u["model_provider"],
                 "model_name": u["model_name"], "score": u["score"], "if_chosen": u["if_chosen"],
                 "within_turn_id": u["within_turn_id"]} for u in rows]
    return out


def write_tiny_prism(folder: Path) -> Path:
    """Write survey/conversations/utterances.jsonl; keys of some rows are deliberately reordered."""
    folder.mkdir(parents=True, exist_ok=True)
    survey = [survey_row(0), survey_row(1, included_in_US_REP=True, gender="Male"),
              survey_row(2, survey_only=True, num_completed_conversations=0)]
    survey[1] = dict(reversed(list(survey[1].items())))  # key order must not matter
    convs = [{"conversation_id": cid, "user_id": user, "included_in_balanced_subset": True,
              "conversation_type": "unguided", "opening_prompt": history(cid)[0]["content"],
              "conversation_turns": n, "conversation_history": history(cid), "performance_attributes": {},
              "choice_attributes": {}, "open_feedback": ""} for cid, user, n in (("c0", "user0", 3), ("c1", "user1", 1))]
    utts = [dict(reversed(list(u.items()))) if i % 2 else u for i, u in enumerate(UTTERANCES)]
    for name, rows in (("survey", survey), ("conversations", convs), ("utterances", utts)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder
