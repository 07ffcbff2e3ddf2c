"""Generate PRISM-shaped sample data (synthetic, clearly marked) with a planted preference effect.

Marginals follow shared/prism/SCHEMA.md exactly at both scales (1,500 participants). SCHEMA.md
does not give joint distributions; ours are *invented but plausible*: the `us` locale gets its own
marginals (ethnicity from PRISM's US residents, a younger-than-census age profile, a
degree-heavy education profile), everyone else gets the remainder, and attributes are otherwise
independent.

Planted effect (what the demo should recover): every model response has one of two styles,
`formal` (opens "Certainly." and hedges) or `casual` (opens "Sure thing!" and is chatty).
Raters aged 55 or over score formal answers OLDER_PREFERENCE points higher than casual ones;
younger raters score casual answers YOUNGER_PREFERENCE points higher (with SCORE_NOISE, each
group picks its style in 96-99% of style-differing pairs). Which style wins in the aggregate
depends on who is counted: formal answers win about 38% of style-differing pairs with the
census's 38% aged 55+ (a census-quota panel), fewer with PRISM's younger US pool, about 12% with
crowd-worker demographics (11% aged 55+); benchmarks/planted_effect.py measures these. The rule
is also written beside the sample as `oracle_spec.json` (`preference_spec`), which the oracle
judge (dlm.judging.oracle) applies to judge model answers as a named group of raters would. A model aligned to the census panel should prefer
`formal` more than one aligned to the crowd-worker panel or to everyone.

Scales: `paper` has the real sizes (≈8,000 conversations, ≈68,000 utterances, real histograms);
`demo` keeps all 1,500 participants but gives each one short conversation, for minutes-long demos.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlm.data.prism import SYNTHETIC_MARKER
from dlm.errors import DLMError
from dlm.io import atomic_path, write_text_atomic

N_PARTICIPANTS = 1500
OLDER_PREFERENCE = 30.0  # score points raters aged 55+ give formal over casual answers
YOUNGER_PREFERENCE = 30.0  # score points younger raters give casual over formal answers
SCORE_NOISE = 10.0  # SD of a response score around its mean; with 4 responses, ~17.5% of turn-0 choices are near-ties
OLDER_AGES = ("55-64 years old", "65+ years old")
STYLES = ("formal", "casual")
ORACLE_SPEC = "oracle_spec.json"  # the generating preference rule, written beside the sample (dlm.judging.oracle reads it)
SPEC_KIND = "dlm-synth-preference-rule"

LOCALES = {  # study_locale -> participants (SCHEMA.md; the 24 small studies are invented, 1-18 each)
    "us": 386, "uk": 341, "south africa": 88, "new zealand": 77, "australia": 71, "mexico": 69,
    "chile": 65, "israel": 61, "canada": 54, "germany": 18, "france": 17, "italy": 16, "spain": 16,
    "poland": 15, "portugal": 15, "netherlands": 14, "greece": 14, "hungary": 13, "sweden": 13,
    "ireland": 13, "czech republic": 12, "belgium": 12, "austria": 12, "finland": 11, "norway": 11,
    "denmark": 10, "switzerland": 10, "japan": 10, "south korea": 9, "india": 8, "singapore": 7,
    "estonia": 6, "latvia": 6,
}
_ASIA = {"japan", "south korea", "india", "singapore"}
COUNTRIES = {  # locale -> (country, ISO alpha-3, region, subregion, special_region)
    "us": ("United States", "USA", "Americas", "Northern America", "US"),
    "uk": ("United Kingdom", "GBR", "Europe", "Northern Europe", "UK"),
    "south africa": ("South Africa", "ZAF", "Africa", "Sub-Saharan Africa", "Africa"),
    "new zealand": ("New Zealand", "NZL", "Oceania", "Australia and New Zealand", "Australia and New Zealand"),
    "australia": ("Australia", "AUS", "Oceania", "Australia and New Zealand", "Australia and New Zealand"),
    "mexico": ("Mexico", "MEX", "Americas", "Latin America and the Caribbean", "Latin America and the Caribbean"),
    "chile": ("Chile", "CHL", "Americas", "Latin America and the Caribbean", "Latin America and the Caribbean"),
    "israel": ("Israel", "ISR", "Asia", "Western Asia", "Middle East"),
    "canada": ("Canada", "CAN", "Americas", "Northern America", "Northern America"),
}
_ISO = {"germany": "DEU", "france": "FRA", "italy": "ITA", "spain": "ESP", "poland": "POL", "portugal": "PRT",
        "netherlands": "NLD", "greece": "GRC", "hungary": "HUN", "sweden": "SWE", "ireland": "IRL",
        "czech republic": "CZE", "belgium": "BEL", "austria": "AUT", "finland": "FIN", "norway": "NOR",
        "denmark": "DNK", "switzerland": "CHE", "japan": "JPN", "south korea": "KOR", "india": "IND",
        "singapore": "SGP", "estonia": "EST", "latvia": "LVA"}
for _loc, _iso in _ISO.items():
    COUNTRIES[_loc] = (_loc.title(), _iso, "Asia" if _loc in _ASIA else "Europe",
                       "Eastern Asia" if _loc in _ASIA else "Europe", "Asia" if _loc in _ASIA else "Europe")

# attribute -> (all-participant counts, counts within the `us` locale). Counts from SCHEMA.md
# where it gives them (age, gender, education, ethnicity, religion); the rest and every `us`
# column are invented, plausible, and sum to 1,500 and 386.
MARGINALS: dict[str, tuple[dict[str, int], dict[str, int]]] = {
    "age": ({"18-24 years old": 297, "25-34 years old": 454, "35-44 years old": 237, "45-54 years old": 208,
             "55-64 years old": 197, "65+ years old": 106, "Prefer not to say": 1},
            {"18-24 years old": 60, "25-34 years old": 110, "35-44 years old": 75, "45-54 years old": 60,
             "55-64 years old": 50, "65+ years old": 31}),
    "gender": ({"Male": 757, "Female": 718, "Non-binary / third gender": 21, "Prefer not to say": 4},
               {"Male": 183, "Female": 198, "Non-binary / third gender": 4, "Prefer not to say": 1}),
    "education": ({"University Bachelors Degree": 637, "Graduate / Professional degree": 241,
                   "Some University but no degree": 236, "Completed Secondary School": 209, "Vocational": 125,
                   "Some Secondary": 24, "Completed Primary School": 16, "Prefer not to say": 9, "Some Primary": 3},
                  {"University Bachelors Degree": 150, "Graduate / Professional degree": 60,
                   "Some University but no degree": 75, "Completed Secondary School": 60, "Vocational": 25,
                   "Some Secondary": 8, "Completed Primary School": 4, "Prefer not to say": 3, "Some Primary": 1}),
    "ethnicity": ({"White": 969, "Black / African": 122, "Hispanic / Latino": 121, "Asian": 95, "Prefer not to say": 86,
                   "Mixed": 68, "Other": 17, "Middle Eastern / Arab": 14, "Indigenous / First Peoples": 8},
                  {"White": 258, "Black / African": 38, "Hispanic / Latino": 28, "Mixed": 24, "Asian": 24,
                   "Prefer not to say": 12, "Indigenous / First Peoples": 2}),
    "religion": ({"No Affiliation": 851, "Christian": 487, "Prefer not to say": 59, "Jewish": 42, "Muslim": 31,
                  "Other": 30},
                 {"No Affiliation": 180, "Christian": 170, "Jewish": 12, "Muslim": 5, "Other": 9,
                  "Prefer not to say": 10}),
    "employment_status": ({"Working full-time": 560, "Working part-time": 220, "Student": 210,
                           "Unemployed, seeking work": 120, "Retired": 150, "Homemaker / Stay-at-home parent": 80,
                           "Unemployed, not seeking work": 100, "Prefer not to say": 60},
                          {"Working full-time": 160, "Working part-time": 55, "Student": 40,
                           "Unemployed, seeking work": 35, "Retired": 40, "Homemaker / Stay-at-home parent": 25,
                           "Unemployed, not seeking work": 20, "Prefer not to say": 11}),
    "marital_status": ({"Never been married": 700, "Married": 550, "Divorced / Separated": 170, "Widowed": 40,
                        "Prefer not to say": 40},
                       {"Never been married": 190, "Married": 140, "Divorced / Separated": 40, "Widowed": 8,
                        "Prefer not to say": 8}),
    "english_proficiency": ({"Native speaker": 900, "Fluent": 380, "Advanced": 150, "Intermediate": 60, "Basic": 10},
                            {"Native speaker": 370, "Fluent": 14, "Advanced": 2}),
}
ETHNICITY_SIMPLIFIED = {"Black / African": "Black", "Hispanic / Latino": "Hispanic", "Middle Eastern / Arab": "Other",
                        "Indigenous / First Peoples": "Other"}
CONVERSATIONS_PER_PARTICIPANT = {1: 25, 2: 28, 3: 34, 4: 10, 5: 11, 6: 1283, 7: 5}
RESPONSES_PER_CONVERSATION = {3: 4, 4: 57, 5: 525, 6: 2191, 7: 497, 8: 1906, 9: 311, 10: 1083, 11: 151, 12: 554,
                              13: 68, 14: 309, 15: 34, 16: 119, 17: 19, 18: 69, 19: 7, 20: 33, 21: 8, 22: 43, 23: 2,
                              24: 9, 26: 6, 27: 3, 28: 2, 44: 1}
DEMO_RESPONSES_PER_CONVERSATION = {5: 1, 6: 6, 8: 3}  # short conversations: 1-2 turns mostly
MODELS = {
    "gpt-4": "openai", "gpt-4-1106-preview": "openai", "gpt-3.5-turbo": "openai", "claude-2": "anthropic",
    "claude-2.1": "anthropic", "claude-instant-1": "anthropic", "command": "cohere", "command-light": "cohere",
    "command-nightly": "cohere", "models/chat-bison-001": "google", "meta-llama/Llama-2-7b-chat-hf": "huggingface_api",
    "meta-llama/Llama-2-13b-chat-hf": "huggingface_api", "meta-llama/Llama-2-70b-chat-hf": "huggingface_api",
    "HuggingFaceH4/zephyr-7b-beta": "huggingface_api", "mistralai/Mistral-7B-Instruct-v0.1": "huggingface_api",
    "tiiuae/falcon-7b-instruct": "huggingface_api", "google/flan-t5-xxl": "huggingface_api",
    "timdettmers/guanaco-33b-merged": "huggingface_api",
    "OpenAssistant/oasst-sft-4-pythia-12b-epoch-3.5": "huggingface_api", "luminous-supreme-control": "aleph",
    "luminous-extended-control": "aleph",
}
CONVERSATION_TYPES = ("unguided", "values guided", "controversy guided")
TOPICS = {  # topic -> (subject phrase, advice phrase); sized roughly like PRISM's prompt clusters
    "managing relationships": ("a disagreement with my partner", "talk openly and listen before you answer"),
    "popular culture": ("a good film to watch tonight", "pick something that matches your mood"),
    "job search": ("how to prepare for a job interview", "practise your answers and research the company"),
    "religion and spirituality": ("whether faith and science can coexist", "many people hold both with care"),
    "elections and political parties": ("how to choose who to vote for", "compare the policies that matter to you"),
    "recipes and cooking": ("a quick dinner with rice and beans", "season well and cook the rice first"),
    "israel-palestine": ("the history of the conflict in Israel and Palestine", "read sources from both sides"),
    "gender and lgbtq+ identity": ("how to support a friend who came out", "listen and follow their lead"),
    "travel": ("a cheap weekend trip in spring", "book early and travel light"),
    "climate change": ("what I can do about climate change", "cut waste and vote for clear plans"),
    "animals and pets": ("how to care for an older dog", "keep walks short and visit the vet"),
    "abortion": ("the main arguments in the abortion debate", "each side appeals to different rights"),
    "economic policy and inequality": ("whether a minimum wage rise helps workers", "evidence points both ways"),
    "immigration": ("how immigration affects local jobs", "studies find small effects on average"),
    "greetings": ("how your day is going", "it is going well, thank you for asking"),
    "ai and machine learning": ("how language models work", "they predict the next word from patterns"),
    "ethics of death and killing": ("whether euthanasia should be legal", "people weigh autonomy against risk"),
    "health and wellness": ("how to sleep better", "keep a regular bedtime and avoid screens"),
    "race and racism": ("how to talk about racism at work", "start from shared values and facts"),
    "holidays": ("ideas for a family holiday", "plan one big activity and rest days"),
    "weather": ("whether it will rain this weekend", "check a local forecast close to the day"),
    "global wars": ("why wars start", "power, fear and resources are common causes"),
}
TOPIC_WEIGHTS = np.array([816, 493, 448, 441, 401, 360, 320, 286, 207, 193, 188, 158, 135, 131, 131, 129, 119, 111,
                          99, 98, 85, 84], dtype=float)
FOLLOW_UPS = ("Can you say more?", "Why do you think so?", "What would you do in my place?",
              "Can you give an example?", "Is there another view?", "How sure are you?")
# style -> (openers, bodies, closers). The two styles have about the same length in characters and
# tokens, so that style is not confounded with length (DPO's summed log-ratios are length-biased).
STYLE_TEXT = {
    "formal": (("Certainly.",),
               ("On {s}, I would suggest that you {a}.", "Regarding {s}, it is prudent to {a}.",
                "With respect to {s}, one approach is to {a}."),
               ("It may be wise to consider this carefully.", "I hope this is of assistance.",
                "Please consult a qualified person if in doubt.")),
    "casual": (("Sure thing!",),
               ("So, {s}? Honestly, my advice is to {a}!", "Ooh, {s}! My favourite tip is to {a}.",
                "Okay so {s} - easy one, you just {a}."),
               ("Hope that helps, and have lots of fun with it.", "You've totally got this, good luck!",
                "Let me know how it all goes, okay?")),
}
DETAILS = ("Timing matters more than people think.", "Small steps add up over a few weeks.",
           "Other people have found this useful.", "It depends a little on where you live.",
           "Costs can vary, so compare options.", "Writing things down can make it clearer.",
           "Friends and family may have good ideas too.", "There is rarely one right answer here.")


@dataclass(frozen=True)
class Scale:
    """How much conversation data a scale generates (the survey always has 1,500 participants)."""

    name: str
    conversations_per_participant: dict[int, int] | None  # None: exactly one each
    responses_per_conversation: dict[int, int]


SCALES = {
    "paper": Scale("paper", CONVERSATIONS_PER_PARTICIPANT, RESPONSES_PER_CONVERSATION),
    "demo": Scale("demo", None, DEMO_RESPONSES_PER_CONVERSATION),
}


def generate_sample(output_dir: str | Path, scale: str = "demo", seed: int = 0) -> dict[str, int]:
    """Write survey/conversations/utterances JSONL in PRISM's schema plus a SYNTHETIC.md marker.

    Args:
        output_dir: folder to write into (created if missing).
        scale: `demo` (short conversations) or `paper` (real sizes).
        seed: the same seed always gives byte-identical files.
    Returns:
        Row counts per file.
    """
    if scale not in SCALES:
        raise DLMError(f"unknown scale '{scale}'; use one of {', '.join(SCALES)}")
    rng = np.random.default_rng(seed)
    survey = make_survey(rng, SCALES[scale])
    conversations, utterances = make_conversations(rng, survey, SCALES[scale])
    out = Path(output_dir)
    for name, rows in (("survey", survey), ("conversations", conversations), ("utterances", utterances)):
        with atomic_path(out / f"{name}.jsonl") as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    counts = {"survey": len(survey), "conversations": len(conversations), "utterances": len(utterances)}
    write_text_atomic(out / SYNTHETIC_MARKER, synthetic_notice(scale, seed, counts))
    write_text_atomic(out / ORACLE_SPEC, json.dumps(preference_spec(scale, seed), indent=1, ensure_ascii=False) + "\n")
    return counts


def preference_spec(scale: str = "demo", seed: int = 0) -> dict:
    """The generating preference rule as data: styles, their markers, and each rater group's score effect.

    `style_score_effect` reads this same rule, so the sample and the oracle judge (dlm.judging.oracle) that
    reads the spec written beside it can never disagree. A response's style is the style whose
    marker the response opens with (`response_text` puts the opener first).
    """
    ages = list(MARGINALS["age"][0])
    return {
        "kind": SPEC_KIND, "version": 1, "scale": scale, "seed": seed,
        "styles": {style: {"markers": [STYLE_TEXT[style][0][0]], "match": "prefix"} for style in STYLES},
        "group_attribute": "age",
        "groups": {
            "55+": {"values": [a for a in ages if a in OLDER_AGES],
                    "style_effect": {"formal": OLDER_PREFERENCE / 2, "casual": -OLDER_PREFERENCE / 2}},
            "under-55": {"values": [a for a in ages if a not in OLDER_AGES],
                         "style_effect": {"formal": -YOUNGER_PREFERENCE / 2, "casual": YOUNGER_PREFERENCE / 2}},
        },
        "score_noise": SCORE_NOISE,
        "notes": "score = rater offset + model quality + style_effect[style] + N(0, score_noise); the higher "
                 "score is chosen. A response with no style marker has effect 0.",
    }


def synthetic_notice(scale: str, seed: int, counts: dict[str, int]) -> str:
    """The marker file's text: this folder is generated, not PRISM."""
    return (
        "# SYNTHETIC DATA: not the PRISM Alignment dataset\n\n"
        f"Generated by `python -m dlm synth --scale {scale} --seed {seed}` in PRISM's schema.\n"
        f"Rows: {counts}.\n\n"
        f"Planted effect: raters aged 55+ score `formal` responses (opening 'Certainly.') {OLDER_PREFERENCE:g} points\n"
        f"higher than `casual` ones (opening 'Sure thing!'); younger raters score casual ones {YOUNGER_PREFERENCE:g}\n"
        "points higher.\n"
        "Joint demographics are invented; see dlm/data/synth.py.\n"
    )


def _allocate(rng: np.random.Generator, is_us: np.ndarray, total: dict[str, int], us: dict[str, int]) -> np.ndarray:
    """Assign category labels with exact overall and within-`us` counts, randomly ordered."""
    labels = np.empty(len(is_us), dtype=object)
    rest = {k: total[k] - us.get(k, 0) for k in total}
    for mask, counts in ((is_us, us), (~is_us, rest)):
        pool = np.array([k for k, n in counts.items() for _ in range(n)], dtype=object)
        if len(pool) != mask.sum():
            raise AssertionError("marginal counts do not add up")  # a bug in MARGINALS, not user input
        labels[mask] = rng.permutation(pool)
    return labels


def make_survey(rng: np.random.Generator, scale: Scale) -> list[dict]:
    """Survey rows with exact marginals, REP flags and locations."""
    n = N_PARTICIPANTS
    locales = rng.permutation(np.array([k for k, c in LOCALES.items() for _ in range(c)], dtype=object))
    is_us = locales == "us"
    attrs = {name: _allocate(rng, is_us, *counts) for name, counts in MARGINALS.items()}
    survey_only = np.zeros(n, dtype=bool)
    survey_only[rng.choice(n, 104, replace=False)] = True
    n_convs = np.zeros(n, dtype=int)
    if scale.conversations_per_participant is None:
        n_convs[~survey_only] = 1
    else:
        dist = scale.conversations_per_participant
        n_convs[~survey_only] = rng.permutation([k for k, c in dist.items() for _ in range(c)])
    us_rep = _draw_us_rep(rng, locales, attrs)
    uk_rep = np.zeros(n, dtype=bool)
    uk_rep[rng.choice(np.flatnonzero(locales == "uk"), 243, replace=False)] = True
    balanced = us_rep | uk_rep
    balanced[rng.choice(np.flatnonzero(~balanced), 1246 - balanced.sum(), replace=False)] = True
    rows = []
    for i in range(n):
        rows.append(_survey_row(rng, i, locales[i], {k: v[i] for k, v in attrs.items()}, bool(survey_only[i]),
                                int(n_convs[i]), bool(us_rep[i]), bool(uk_rep[i]), bool(balanced[i])))
    return rows


def _draw_us_rep(rng: np.random.Generator, locales: np.ndarray, attrs: dict[str, np.ndarray]) -> np.ndarray:
    """230 `us` participants of binary gender, tilted towards census age and ethnicity shares."""
    census_age = {"18-24 years old": .12, "25-34 years old": .18, "35-44 years old": .17, "45-54 years old": .16,
                  "55-64 years old": .17, "65+ years old": .20}
    census_eth = {"White": .62, "Black / African": .12, "Hispanic / Latino": .17, "Asian": .06, "Mixed": .03}
    idx = np.flatnonzero((locales == "us") & np.isin(attrs["gender"], ["Male", "Female"]))
    weights = np.array([census_age.get(attrs["age"][i], .01) * census_eth.get(attrs["ethnicity"][i], .01)
                        for i in idx])
    keys = rng.random(len(idx)) ** (1.0 / weights)  # Efraimidis-Spirakis weighted sampling without replacement
    chosen = idx[np.argsort(-keys)[:230]]
    out = np.zeros(len(locales), dtype=bool)
    out[chosen] = True
    return out


def _survey_row(rng, i, locale, a, survey_only, n_convs, us_rep, uk_rep, balanced) -> dict:
    """One participant's survey record in PRISM's key layout."""
    country, iso, region, subregion, special = COUNTRIES[locale]
    born_elsewhere = rng.random() < 0.1
    birth = COUNTRIES[rng.choice(list(LOCALES))] if born_elsewhere else COUNTRIES[locale]
    eth, rel = a["ethnicity"], a["religion"]
    return {
        "user_id": f"user{i}", "survey_only": survey_only, "num_completed_conversations": n_convs,
        "consent": "Yes", "consent_age": "Yes",
        "lm_familiarity": rng.choice(["Very familiar", "Somewhat familiar", "Not familiar at all"], p=[.4, .5, .1]),
        "lm_indirect_use": rng.choice(["Yes", "No", "Unsure"]), "lm_direct_use": rng.choice(["Yes", "No", "Unsure"]),
        "lm_frequency_use": None if rng.random() < 0.165 else rng.choice(
            ["Every day", "Every week", "More than once a month", "Once per month", "Less than one a year"]),
        "self_description": "I am a synthetic participant.", "system_string": "Be helpful and honest.",
        "age": a["age"], "gender": a["gender"], "employment_status": a["employment_status"],
        "education": a["education"], "marital_status": a["marital_status"],
        "english_proficiency": a["english_proficiency"], "study_id": f"study_{locale.replace(' ', '_')}",
        "study_locale": locale,
        "religion": {"self_described": rel.lower(), "categorised": rel, "simplified": rel},
        "ethnicity": {"self_described": eth.lower(), "categorised": eth, "simplified": ETHNICITY_SIMPLIFIED.get(eth, eth)},
        "location": {"birth_country": birth[0], "birth_countryISO": birth[1], "birth_region": birth[2],
                     "birth_subregion": birth[3], "reside_country": country, "reside_countryISO": iso,
                     "reside_region": region, "reside_subregion": subregion,
                     "same_birth_reside_country": "No" if birth[1] != iso else "Yes", "special_region": special},
        "lm_usecases": {k: int(rng.random() < 0.3) for k in (
            "homework_assistance", "research", "source_suggestions", "professional_work", "creative_writing",
            "casual_conversation", "personal_recommendations", "daily_productivity", "technical_or_programming_help",
            "travel_guidance", "lifestyle_and_hobbies", "well-being_guidance", "medical_guidance",
            "financial_guidance", "games", "historical_or_news_insight", "relationship_advice", "language_learning",
        )} | {"other": None, "other_text": None},
        "stated_prefs": {k: int(rng.integers(0, 101)) for k in (
            "values", "creativity", "fluency", "factuality", "diversity", "safety", "personalisation",
            "helpfulness", "other")} | {"other_text": None},
        "order_lm_usecases": None, "order_stated_prefs": None,
        "generated_datetime": f"2023-11-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(7 * i) % 60:02d}",
        "timing_duration_s": 600.0 + i % 300, "timing_duration_mins": round((600.0 + i % 300) / 60, 2),
        "included_in_US_REP": us_rep, "included_in_UK_REP": uk_rep, "included_in_balanced_subset": balanced,
    }


_RULE = preference_spec()


def style_score_effect(age: str, style: str) -> float:
    """The planted effect: older raters prefer formal answers, younger raters casual ones (read from the spec)."""
    group = "55+" if age in _RULE["groups"]["55+"]["values"] else "under-55"
    return _RULE["groups"][group]["style_effect"][style]


def response_text(rng: np.random.Generator, topic: str, style: str, turn: int) -> str:
    """A short model answer in the given style about the topic."""
    subject, advice = TOPICS[topic]
    openers, bodies, closers = STYLE_TEXT[style]
    opener = openers[0] + ("" if turn == 0 else (" As I said before," if style == "formal" else " Like I said,"))
    parts = [opener, bodies[rng.integers(len(bodies))].format(s=subject, a=advice)]
    parts += [DETAILS[k] for k in sorted(rng.choice(len(DETAILS), rng.integers(0, 3), replace=False))]
    if rng.random() < 0.6:
        parts.append(closers[rng.integers(len(closers))])
    return " ".join(parts)


def make_conversations(rng: np.random.Generator, survey: list[dict], scale: Scale) -> tuple[list[dict], list[dict]]:
    """Conversations and their scored utterances, consistent with each other and the survey."""
    model_names = list(MODELS)
    model_quality = dict(zip(model_names, rng.normal(0, 4, len(model_names)), strict=True))
    sizes = np.array(list(scale.responses_per_conversation))
    size_p = np.array(list(scale.responses_per_conversation.values()), dtype=float)
    size_p /= size_p.sum()
    topic_names = list(TOPICS)
    topic_p = TOPIC_WEIGHTS / TOPIC_WEIGHTS.sum()
    conversations, utterances = [], []
    counters = {"c": 0, "int": 0, "ut": 0}
    for person in survey:
        offset = rng.normal(0, 8)
        for _ in range(person["num_completed_conversations"]):
            conv, utts = _conversation(rng, person, offset, counters, int(rng.choice(sizes, p=size_p)),
                                       topic_names[rng.choice(len(topic_names), p=topic_p)], model_quality)
            conversations.append(conv)
            utterances += utts
    return conversations, utterances


def _conversation(rng, person, offset, counters, n_responses, topic, model_quality) -> tuple[dict, list[dict]]:
    """One conversation: a turn-0 comparison of 3-4 models, then pairs from the chosen model."""
    cid = f"c{counters['c']}"
    counters["c"] += 1
    n_opening = 4 if n_responses % 2 == 0 else 3
    n_turns = 1 + (n_responses - n_opening) // 2
    ctype = CONVERSATION_TYPES[rng.integers(3)]
    opening = f"Can you help me with {TOPICS[topic][0]}?"
    history, utterances = [], []
    chosen_model = None
    for turn in range(n_turns):
        prompt = opening if turn == 0 else FOLLOW_UPS[rng.integers(len(FOLLOW_UPS))]
        history.append({"turn": turn, "role": "user", "content": prompt})
        if turn == 0:
            models = list(rng.choice(list(MODELS), n_opening, replace=False))
        else:
            models = [chosen_model, chosen_model]
        responses = _score_responses(rng, person, offset, topic, turn, models, model_quality)
        chosen_model = next(m for m, r in zip(models, responses, strict=True) if r["if_chosen"])
        iid = f"int{counters['int']}"
        counters["int"] += 1
        order = rng.permutation(len(models))
        for within, k in enumerate(order):
            r = responses[k]
            history.append({"turn": turn, "role": "model", "content": r["text"], "model_provider": MODELS[models[k]],
                            "model_name": models[k], "score": r["score"], "if_chosen": r["if_chosen"],
                            "within_turn_id": within})
            utterances.append({
                "utterance_id": f"ut{counters['ut']}", "interaction_id": iid, "conversation_id": cid,
                "user_id": person["user_id"], "turn": turn, "within_turn_id": within,
                "included_in_balanced_subset": person["included_in_balanced_subset"], "conversation_type": ctype,
                "user_prompt": prompt, "model_response": r["text"], "model_name": models[k],
                "model_provider": MODELS[models[k]], "score": r["score"], "if_chosen": r["if_chosen"],
            })
            counters["ut"] += 1
    attrs = ("values", "fluency", "factuality", "safety", "diversity", "creativity", "helpfulness")
    conv = {
        "conversation_id": cid, "user_id": person["user_id"],
        "included_in_balanced_subset": person["included_in_balanced_subset"],
        "generated_datetime": person["generated_datetime"], "timing_duration_s": 120.0 + 30 * n_turns,
        "timing_duration_mins": round((120.0 + 30 * n_turns) / 60, 2), "conversation_type": ctype,
        "opening_prompt": opening, "conversation_turns": n_turns, "conversation_history": history,
        "performance_attributes": {k: int(rng.integers(1, 101)) for k in attrs},
        "choice_attributes": {k: (None if rng.random() < 0.2 else int(rng.integers(1, 101))) for k in attrs},
        "open_feedback": "Synthetic feedback.",
    }
    return conv, utterances


def _score_responses(rng, person, offset, topic, turn, models, model_quality) -> list[dict]:
    """Texts, 1-100 scores and `if_chosen` flags for one interaction's responses."""
    out = []
    for m in models:
        style = STYLES[rng.integers(2)]
        text = "EMPTY STRING" if rng.random() < 0.003 else response_text(rng, topic, style, turn)
        score = 65 + offset + model_quality[m] + style_score_effect(person["age"], style) + rng.normal(0, SCORE_NOISE)
        if text == "EMPTY STRING":
            score -= 30
        out.append({"text": text, "score": int(np.clip(round(score), 1, 100))})
    if turn > 0 and rng.random() < 0.02:  # identical A/B texts: PRISM's text match flags both as chosen
        out[1] = dict(out[0])
    best = max(r["score"] for r in out)
    winners = [i for i, r in enumerate(out) if r["score"] == best]
    pick = winners[rng.integers(len(winners))]
    for i, r in enumerate(out):
        r["if_chosen"] = i == pick or (turn > 0 and r["text"] == out[pick]["text"])
    return out
