"""Export the app's conversations as a dataset file (JSON Lines), with a progress bar.

    python scripts/export_dataset.py --format preference -o prefs.jsonl
    python scripts/export_dataset.py --format openai --model Qwen2.5-7B-Instruct \\
        --since 2026-11-01 --until 2026-12-01 --min-rating 0 -o sft.jsonl
    CHAT_API_TOKEN=dct_... python scripts/export_dataset.py --url https://chat.example ...

Formats: openai (one conversation a line, the replies shown), sharegpt (the same, as
{"from", "value"}), preference (TRL's prompt/chosen/rejected pairs from ratings and chosen
alternatives); what the filters mean: docs/usage.md, chat_core/data/dataset_export.py.

It asks the running app (GET /api/dataset), so what leaves is decided in one place, the
service: a person's token exports their own conversations, an admin's everyone's who accepted
the notice, under pseudonyms unless --names. It needs no access to the database, works against
a remote app as well as a local one, and never reads what the caller's login may not.
With accounts on, give an API token (Account tab, or POST /api/me/tokens) with --token or
CHAT_API_TOKEN. The file is written under a temporary name and renamed once the whole answer
has arrived: an answer cut short (the app stopped) leaves no file that looks complete.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

import httpx

FORMATS = ("openai", "sharegpt", "preference")


class ExportFailed(Exception):
    """The app refused the export or the answer was cut short; the message says which."""


@contextlib.contextmanager
def progress_bar(stream: TextIO = sys.stderr) -> Iterator[Callable[[int], None]]:
    """A callback told of each line written: tqdm's bar when tqdm is installed (it comes
    with the app's requirements), else a counter on stderr."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with the requirements
        count = [0]

        def tick(n: int) -> None:
            count[0] += n
            if count[0] % 1000 == 0:
                print(f"\r{count[0]:,} lines", end="", file=stream, flush=True)
        yield tick
        return
    with tqdm(unit=" lines", file=stream, mininterval=0.5) as bar:
        yield bar.update


def export(client: httpx.Client, params: dict[str, str], output: Path,
           progress: Callable[[int], None] = lambda n: None) -> int:
    """Stream GET /api/dataset into `output`; the number of lines written."""
    partial = output.with_name(output.name + ".partial")
    lines = 0
    try:
        with client.stream("GET", "/api/dataset", params=params) as answer:
            if answer.status_code != 200:
                answer.read()
                raise ExportFailed(_refusal(answer))
            with partial.open("w", encoding="utf-8") as out:
                for line in answer.iter_lines():
                    if line:
                        out.write(line + "\n")
                        lines += 1
                        progress(1)
    except httpx.ConnectError as exc:
        raise ExportFailed(f"cannot reach the app at {client.base_url} ({exc}); is it "
                           "running? (--url, CHAT_URL)") from None
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise ExportFailed(f"the answer was cut short after {lines:,} lines "
                           f"({type(exc).__name__}: {exc}); no file was written: run the "
                           "export again") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(output)
    return lines


def _refusal(answer: httpx.Response) -> str:
    try:
        body: Any = answer.json()
        text = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        text = None
    if answer.status_code == 401:
        text = "log in: give an API token with --token or CHAT_API_TOKEN"
    return f"the app answered {answer.status_code}: {text or answer.text[:300]}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=FORMATS, default="openai")
    parser.add_argument("--model", help="only replies by this model (exact name)")
    parser.add_argument("--since", help="from this date or time on (ISO 8601, UTC if no "
                                        "offset), e.g. 2026-11-01")
    parser.add_argument("--until", help="before this date or time (ISO 8601)")
    parser.add_argument("--min-rating", choices=("-1", "0", "1"),
                        help="leave out what is rated below this (unrated counts 0)")
    parser.add_argument("--names", action="store_true",
                        help="owners by name instead of pseudonyms (accounts on)")
    parser.add_argument("-o", "--output", type=Path,
                        help="the file to write (default: dataset-<format>.jsonl)")
    parser.add_argument("--url", default=os.environ.get(
        "CHAT_URL", f"http://127.0.0.1:{os.environ.get('PORT', '8080')}"),
                        help="the app (default: CHAT_URL, else http://127.0.0.1:$PORT)")
    parser.add_argument("--token", default=os.environ.get("CHAT_API_TOKEN"),
                        help="an API token (default: CHAT_API_TOKEN); needed with accounts on")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for the next part of the answer")
    return parser.parse_args(argv)


def query_params(args: argparse.Namespace) -> dict[str, str]:
    params = {"format": args.format}
    for name in ("model", "since", "until"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    if args.min_rating is not None:
        params["min_rating"] = args.min_rating
    if args.names:
        params["pseudonyms"] = "false"
    return params


def main(argv: list[str] | None = None,
         transport: httpx.BaseTransport | None = None) -> int:
    args = parse_args(argv)
    output = args.output or Path(f"dataset-{args.format}.jsonl")
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    with httpx.Client(base_url=args.url, headers=headers, transport=transport,
                      timeout=httpx.Timeout(30.0, read=args.timeout)) as client:
        try:
            with progress_bar() as progress:
                lines = export(client, query_params(args), output, progress)
        except ExportFailed as exc:
            print(f"\nexport failed: {exc}", file=sys.stderr)
            return 1
    print(f"\n{lines:,} lines written to {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
