"""How spoken queries' biasing settings were chosen: on the Tux Paint train+val English spoken
descriptions (val alone has 5 clips, too few to choose from), never test.

For each clip Whisper's beam-5 n-best is computed once, the vocabulary entries nearest in
spelling are scored as the clip's transcript, and every (candidates, slack) setting is replayed
from those scores (:mod:`spaner.search.speech_bias`). Per setting:

* ``acc``: the transcript used is the clip's own label;
* ``R@1``: speech -> image over the train+val photos (the trained model's own text space);
* ``oov``: with the clip's own label taken out of the vocabulary (the user said a word the
  collection does not have), how often the transcript is still replaced (lower is better).

The default is the best ``R@1`` (what a user sees), ties broken by the lower ``oov`` (a word
the collection does not have should stay what the user said), then by ``acc``; a
leave-one-out run of that choice says how well choosing on 46 clips generalises.

    .venv/bin/python studies/spoken_bias_choice.py --manifest /tmp/tuxpaint/manifest.jsonl \\
        --checkpoint /tmp/tux-ckpt [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from machine import cpu_model

SLACKS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, float("inf"))
CANDIDATES = (4, 8, 16)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from spaner.pipeline import Spaner
    from spaner.search.speech_bias import Vocabulary, _entry_form, _said_article, normalise
    from spaner.search.spoken import BEAM_SIZE, transcriber_for

    root = args.manifest.parent
    rows = [json.loads(x) for x in args.manifest.read_text().splitlines() if x.strip()]
    sp = Spaner.load(args.checkpoint)
    whisper = transcriber_for(sp)
    en = [r for r in rows if "text" in r and r["meta"].get("lang", "en") == "en"]
    vocab = Vocabulary.build([r["text"] for r in en] + sorted({r["concept"] for r in rows}))
    label_of = {r["concept"]: normalise(r["text"]) for r in en}
    clips = [
        r
        for r in rows
        if r["meta"].get("kind") == "speech"
        and r["meta"].get("lang", "en") == "en"
        and r["split"] in ("train", "val")
    ]
    pool = [r for r in rows if "image" in r and r["split"] in ("train", "val")]
    pool_vec = sp.embed("image", [str(root / r["image"]) for r in pool])
    pool_c = np.array([r["concept"] for r in pool])
    kmax = max(CANDIDATES) + 4  # room for the clip's own label(s) taken out (oov)
    scored = []
    for r in clips:
        wave = whisper.load(str(root / r["audio"]))
        enc = whisper.encode_window([wave])
        hyps = [
            t
            for t, _ in whisper.transcribe([wave], BEAM_SIZE, BEAM_SIZE, encoded=enc)[0][
                "hypotheses"
            ]
        ]
        near = vocab.nearest(hyps, kmax)
        art = _said_article(hyps[0])
        texts = [" " + hyps[0].strip()]
        texts += [_entry_form(vocab.entries[i], vocab.forms[i], art) for i in near]
        s = whisper.text_logprobs(enc[0], texts)
        own = {i for i in near if vocab.forms[i] == label_of[r["concept"]]}
        scored.append((r, hyps[0], near, s, own))

    cache: dict[str, np.ndarray] = {}

    def hit(text: str, concept: str) -> float:
        if text not in cache:
            cache[text] = sp.embed("text", [text])[0]
        return float(pool_c[int(np.argmax(pool_vec @ cache[text]))] == concept)

    def pick(near: list[int], s: np.ndarray, slack: float, k: int, drop: set[int]) -> int | None:
        cand = [(s[j + 1], i) for j, i in enumerate(near) if i not in drop][:k]
        if not cand:
            return None
        best, i = max(cand)
        return i if best - s[0] >= -slack else None

    settings = [("unbiased (beam-5 top)", 0.0, 0)] + [
        ("biased", sl, k) for sl in SLACKS for k in CANDIDATES
    ]
    per: dict[tuple, np.ndarray] = {}
    for st in settings:
        out = []
        for r, heard, near, s, own in scored:
            i = None if st[2] == 0 else pick(near, s, st[1], st[2], set())
            text = heard if i is None else vocab.entries[i]
            oov = st[2] > 0 and pick(near, s, st[1], st[2], own) is not None
            acc = normalise(text) == label_of[r["concept"]]
            out.append((acc, hit(text or "-", r["concept"]), oov))
        per[st] = np.array(out, dtype=float)

    def key(st: tuple, m: np.ndarray) -> tuple:
        a = per[st][m]
        return (a[:, 1].mean(), -a[:, 2].mean(), a[:, 0].mean())

    n = len(scored)
    chosen = max(settings, key=lambda st: key(st, np.ones(n, bool)))
    loo = []
    for i in range(n):
        m = np.ones(n, bool)
        m[i] = False
        loo.append(per[max(settings, key=lambda st, m=m: key(st, m))][i])
    loo_mean = np.mean(loo, axis=0)
    table = {
        f"{st[0]} k={st[2]} slack={st[1]}": dict(
            zip(("acc", "R@1", "oov"), per[st].mean(0).round(3).tolist(), strict=True)
        )
        for st in settings
    }
    print(f"CPU: {cpu_model()}; {n} train+val clips; pool {len(pool)} photos; vocab {len(vocab)}")
    print("| setting | acc | R@1 | oov snapped |\n|---|---|---|---|")
    for name, m in table.items():
        print(f"| {name} | {m['acc']:.3f} | {m['R@1']:.3f} | {m['oov']:.3f} |")
    print(
        f"chosen: k={chosen[2]} slack={chosen[1]}; leave-one-out of the choice: "
        f"acc {loo_mean[0]:.3f} R@1 {loo_mean[1]:.3f}"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "cpu": cpu_model(),
                    "clips": n,
                    "table": table,
                    "chosen": {"candidates": chosen[2], "slack": chosen[1]},
                    "loo": {"acc": loo_mean[0], "R@1": loo_mean[1]},
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
