"""Distinct prompts of a given length in tokens, the same texts for both endpoints.

A prompt is a fixed instruction followed by random common words, each with a leading
space. Byte-level BPE and SentencePiece tokenizers both split text at spaces first, so a
prompt's length is the instruction's plus the sum of its words'. Each word and the
instruction are measured once with the server's own tokenizer (vLLM's `/tokenize`,
llama.cpp's `/extras/tokenize`), and only words that are one token are kept. Random
words per request keep prompts distinct, so no server answers from a prefix cache.
Where no endpoint can tokenize (Ollama), one token per word is the estimate.
"""

from __future__ import annotations

import asyncio
import random

from validation.client import EndpointError, OpenAIClient

INSTRUCTION = "Write a long story that uses all of these words:"
_WORD_TEXT = (
    "time year people way day man thing woman life child world school state family "
    "student group country problem hand part place case week company system program "
    "question work government number night point home water room mother area money "
    "story fact month lot right study book eye job word business issue side kind head "
    "house service friend father power hour game line end member law car city name "
    "team minute idea kid body back parent face others level office door health person "
    "art war history party result change morning reason research girl guy moment air "
    "teacher force education foot boy age policy music market sense nation plan college "
    "interest death experience effect class control care field development role effort "
    "rate heart drug show leader light voice wife police mind price report decision son "
    "view relationship town road arm difference value building action model season "
    "society tax director position player record paper space ground form event official "
    "matter center couple site project activity star table need court oil situation cost "
    "industry figure street image phone data picture practice piece land product doctor "
    "wall patient worker news test movie north love support technology step baby computer "
    "type attention film tree source organization hair window evidence population site "
    "river garden forest stone silver winter yellow candle mountain ocean bright quiet"
)
WORDS = _WORD_TEXT.split()


class PromptMaker:
    """Makes prompts of `tokens` tokens; `exact` says whether a tokenizer sized them."""

    def __init__(self, instruction_tokens: int, words: list[str], measured_by: str) -> None:
        self.instruction_tokens = instruction_tokens
        self.words = words
        self.measured_by = measured_by

    @property
    def exact(self) -> bool:
        return self.measured_by != "estimate"

    def make(self, tokens: int, rng: random.Random) -> str:
        count = max(0, tokens - self.instruction_tokens)
        return INSTRUCTION + "".join(" " + rng.choice(self.words) for _ in range(count))


async def prompt_maker(endpoints: list[tuple[OpenAIClient, str]]) -> PromptMaker:
    """Size words with the first endpoint (client, model) that can tokenize."""
    for client, model in endpoints:
        try:
            instruction = await client.tokenize_text(model, INSTRUCTION)
            if instruction is None:
                continue
            single = await _single_token_words(client, model)
        except EndpointError:
            continue
        if len(single) >= 20:
            return PromptMaker(len(instruction), single, client.kind)
    return PromptMaker(len(INSTRUCTION.split()), sorted(set(WORDS)), "estimate")


async def _single_token_words(client: OpenAIClient, model: str) -> list[str]:
    gate = asyncio.Semaphore(16)

    async def length(word: str) -> int:
        async with gate:
            return len(await client.tokenize_text(model, " " + word) or [])

    lengths = await asyncio.gather(*(length(w) for w in WORDS))
    return sorted({w for w, n in zip(WORDS, lengths, strict=True) if n == 1})
