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
With accounts on, give an API token (Account tab, or POST /api/me/tokens) in CHAT_API_TOKEN
(kept out of the process list and the shell's history) or with --token. The file holds
people's words: it is created readable by its owner only (0600), under a temporary name
(<output>.partial, never followed if it is a link) and renamed once the whole answer has
arrived: an answer cut short (the app stopped) leaves no file that looks complete. Lines end
at "\n" only (U+2028 and the like inside the text are not line ends).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import sys
from pathlib import Path
from typing import IO, Any, Callable, Iterator, TextIO

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from chat_core.secrets_mask import mask_secrets, remember_secrets  # noqa: E402

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
            with private_file(partial) as out:
                for line in split_lines(answer.iter_bytes()):
                    out.write(line)
                    lines += 1
                    progress(1)
    except httpx.ConnectError as exc:
        raise ExportFailed(f"cannot reach the app at {mask_secrets(str(client.base_url))} "
                           f"({mask_secrets(str(exc))}); is it running? (--url, CHAT_URL)"
                           ) from None
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise ExportFailed(f"the answer was cut short after {lines:,} lines "
                           f"({type(exc).__name__}: {mask_secrets(str(exc))}); no file was "
                           "written: run the export again") from None
    except ExportFailed:
        raise
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(output)
    return lines


def split_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The answer's lines, each with its b"\n": split on that byte alone, never on what
    str.splitlines or httpx's iter_lines also take for a line end (U+2028, U+2029, U+0085,
    a lone \r), which a message's text may hold. An unfinished last line is kept whole."""
    held = b""
    for chunk in chunks:
        held += chunk
        *whole, held = held.split(b"\n")
        for line in whole:
            if line:
                yield line + b"\n"
    if held:
        yield held + b"\n"


@contextlib.contextmanager
def private_file(path: Path) -> Iterator[IO[bytes]]:
    """A new file at `path`, readable and writable by its owner only, whatever the umask;
    never opened through a link planted there (O_NOFOLLOW, O_EXCL). A regular file left by
    an export that was killed is replaced; anything else there is refused."""
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            path.unlink()
    except FileNotFoundError:
        pass
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ExportFailed(f"{path} exists and is not a file this script left (a link?); "
                           "remove it, or choose another --output") from None
    except OSError as exc:
        raise ExportFailed(f"cannot create {path}: {exc.strerror}") from None
    written = False
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        written = True
    finally:
        if not written:
            path.unlink(missing_ok=True)


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
                        help="an API token; needed with accounts on. Better in CHAT_API_TOKEN "
                             "(the default), where the process list does not show it")
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
    remember_secrets([args.token])  # masked in anything shown, should the app echo it
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
