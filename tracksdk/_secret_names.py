"""Which names hold secrets: the rules :func:`looks_secret` applies to a name alone.

A variable, argument or key whose name looks secret has its value masked and registered
as a secret (:mod:`tracksdk._redact` does that); the value itself is never inspected.
"""

from __future__ import annotations

import functools
import itertools
import re

# Words that mark a name as secret. Names are split into words on - _ . and camelCase, so
# `tokenizer`, `max_tokens` and `author` are not secret while `api_key` and `apiToken` are.
_SECRET_WORDS = frozenset(
    {
        "apikey",
        "accesskey",
        "auth",
        "credential",
        "credentials",
        "passphrase",
        "passwd",
        "password",
        "privatekey",
        "pwd",
        "secret",
        "secretkey",
        "token",
    }
)
_SECRET_PAIRS = frozenset(
    {("access", "key"), ("api", "key"), ("private", "key"), ("secret", "key")}
)
# Run-together names (`DBPASSWORD`, `GHTOKEN`, `WANDBAPIKEY`): a word that ends in one of
# these is secret too. Only long, distinctive words: `pwd` and `auth` end too many
# ordinary words (`OLDPWD`, the previous directory) to be matched inside one.
_SECRET_SUFFIXES = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "credential",
    "credentials",
)
# A tokenizer's special tokens and token counts are not secrets: `pad_token`,
# `eos_token_id`, `token_count`.
_TOKENIZER_WORDS = frozenset(
    {"pad", "eos", "bos", "unk", "sep", "cls", "mask", "special", "additional"}
)
_TOKEN_COUNT_WORDS = frozenset({"id", "ids", "count", "counts", "len", "length", "limit", "type"})
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SEPARATORS = re.compile(r"[-_.\s]+")
# Variables whose names look secret but whose values are not: a provider name, a path,
# and the working directories every shell exports (PWD is "pwd" as a whole name).
_NOT_SECRET = frozenset({"MLFLOW_TRACKING_AUTH", "MLFLOW_AUTH_CONFIG_PATH", "PWD", "OLDPWD"})


def _words(name: str) -> tuple[str, ...]:
    return tuple(
        word.lower()
        for word in _WORD_SEPARATORS.split(_CAMEL_BOUNDARY.sub("-", name.lstrip("+~")))
        if word
    )


@functools.lru_cache(maxsize=4096)
def looks_secret(name: str) -> bool:
    """Tell whether a variable, argument or key name suggests its value is a secret.

    The name is split into words on ``-``, ``_``, ``.``, spaces and camelCase. It is
    secret when a word is one of the secret words (``token``, ``password``, ``pwd``, ...),
    two adjacent words form ``api key``, ``access key``, ``private key`` or ``secret key``,
    or a word ends in a long secret word (``dbpassword``, ``ghtoken``). A tokenizer's
    ``pad_token``, ``eos_token_id`` or ``token_count`` is not secret.
    """
    words = _words(name)
    for i, word in enumerate(words):
        if word == "token" and (
            (i > 0 and words[i - 1] in _TOKENIZER_WORDS)
            or (i + 1 < len(words) and words[i + 1] in _TOKEN_COUNT_WORDS)
        ):
            continue
        if word in _SECRET_WORDS or word.endswith(_SECRET_SUFFIXES):
            return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def is_secret_env_name(name: str) -> bool:
    """Whether the environment variable ``name`` holds a secret (see :func:`looks_secret`)."""
    return name.upper() not in _NOT_SECRET and looks_secret(name)
