"""Hotword vocabularies: validation, the library client against the emulator, managed lists,
and hotwords visibly changing what the emulator recognizes."""

from __future__ import annotations

import pytest
import trio
from testkit.common import FAKE_KEY, ToneScript, fixture_emulator, stream_through, tone_script
from voicekit_dashscope.asr.task import FunASRRealtime
from voicekit_dashscope.errors import VocabularyError, VocabularyValidationError
from voicekit_dashscope.vocabulary import Hotword, ManagedVocabulary, VocabularyClient, validate_words
from voicekit_dashscope_emulator import DashScopeEmulator
from voicekit_dashscope_emulator.biasing import apply_hotwords, split_words, spread
from voicekit_dashscope_emulator.vocabulary import VocabularyStore


@pytest.mark.parametrize(("words", "match"), [
    ([Hotword("fine", 6)], "weights are whole numbers from 1 to 5"),
    ([Hotword("fine", 0)], "from 1 to 5"),
    ([{"text": "one two three four five six seven eight", "weight": 4}], "at most 7"),
    (["赛德克巴莱赛德克巴莱赛德克巴莱赛"], "at most 15"),
    ([], "at least one"),
    (["w"] * 501, "at most 500"),
    ([Hotword("ok", 4, "english")], "lang"),
])
def test_limits_are_checked_before_sending(words: list, match: str) -> None:
    with pytest.raises(VocabularyValidationError, match=match):
        validate_words(words)


def test_valid_words() -> None:
    got = validate_words(["Moonshine", {"text": "赛德克巴莱", "weight": 5, "lang": "zh"}])
    assert got == (Hotword("Moonshine", 4), Hotword("赛德克巴莱", 5, "zh"))


async def test_crud_against_the_emulator(emulator: DashScopeEmulator) -> None:
    client = VocabularyClient(FAKE_KEY, base_url=emulator.http_base_url)
    assert "customization" in client.url and FAKE_KEY not in repr(client)
    vid = await client.create("fun-asr-realtime", "crud1", ["Moonshine", Hotword("LibriVox", 5, "en")])
    assert vid.startswith("vocab-crud1-") and len(vid) == len("vocab-crud1-") + 32
    listed = await client.list("crud1")
    assert [i.vocabulary_id for i in listed] == [vid] and listed[0].status == "OK"
    info = await client.query(vid)
    assert info.target_model == "fun-asr-realtime"
    assert info.words == (Hotword("Moonshine", 4), Hotword("LibriVox", 5, "en"))
    await client.update(vid, ["Dashwood"])
    assert (await client.query(vid)).words == (Hotword("Dashwood", 4),)
    await client.delete(vid)
    assert await client.list("crud1") == []
    with pytest.raises(VocabularyError) as info2:
        await client.query(vid)
    assert info2.value.code == "InvalidParameter" and info2.value.status == 400
    with pytest.raises(VocabularyValidationError, match="prefix"):
        await client.create("fun-asr-realtime", "Bad-Prefix", ["x"])


async def test_quota_of_ten_lists_per_key(emulator: DashScopeEmulator) -> None:
    client = VocabularyClient(FAKE_KEY, base_url=emulator.http_base_url)
    for i in range(10):
        await client.create("fun-asr-realtime", f"q{i}", ["word"])
    with pytest.raises(VocabularyError, match="quota"):
        await client.create("fun-asr-realtime", "q10", ["word"])
    other = VocabularyClient("sk-another-key-0000000000", base_url=emulator.http_base_url)
    assert await other.list() == []  # lists are per key
    assert len(await client.list_all()) == 10


async def test_unauthenticated_calls_are_refused(emulator: DashScopeEmulator) -> None:
    import httpx

    async with httpx.AsyncClient() as http:
        r = await http.post(emulator.http_base_url + "/services/audio/asr/customization",
                            json={"model": "speech-biasing", "input": {"action": "list_vocabulary"}})
    assert r.status_code == 401 and r.json()["code"] == "InvalidApiKey"


async def test_new_lists_can_start_undeployed(autojump_clock: trio.abc.Clock, script: ToneScript) -> None:
    async with fixture_emulator(script, store=VocabularyStore(deploy_delay=3.0)) as emu:
        client = VocabularyClient(FAKE_KEY, base_url=emu.http_base_url)
        vid = await client.create("fun-asr-realtime", "slow", ["word"])
        assert (await client.query(vid)).status == "UNDEPLOYED"
        t0 = trio.current_time()
        info = await client.wait_ready(vid, interval=0.5)
        assert info.status == "OK" and 2.5 <= trio.current_time() - t0 <= 4.0


def test_biasing_replaces_near_misses() -> None:
    assert apply_hotwords("the moon shine model works", [Hotword("Moonshine", 4)]) == "the Moonshine model works"
    assert apply_hotwords("mister dash wood said", [Hotword("Dashwood", 5)]) == "mister Dashwood said"
    assert apply_hotwords("nothing alike here", [Hotword("Moonshine", 4)]) == "nothing alike here"
    assert split_words("Okay, I got it.") == [("Okay", ","), ("I", ""), ("got", ""), ("it", ".")]
    assert spread([("ab", ""), ("c", "")], 0, 500)[-1][1] == 500


async def test_hotwords_are_visible_in_recognition(emulator: DashScopeEmulator, script: ToneScript) -> None:
    plain = FunASRRealtime(api_key=FAKE_KEY, base_url=emulator.base_url)
    before = [r.text for r in await stream_through(plain, script.audio) if r.is_final]
    assert before[0] == "sentence 0 says 300 hertz"
    biased = FunASRRealtime(api_key=FAKE_KEY, base_url=emulator.base_url, hotwords=["Sentance", "Herz"])
    after = [r.text for r in await stream_through(biased, script.audio) if r.is_final]
    assert after[0] == "Sentance 0 says 300 Herz"
    # a list for another model has no effect, as documented
    client = VocabularyClient(FAKE_KEY, base_url=emulator.http_base_url)
    other = await client.create("paraformer-realtime-v2", "other", ["Sentance"])
    by_id = FunASRRealtime(api_key=FAKE_KEY, base_url=emulator.base_url, vocabulary_id=other)
    assert [r.text for r in await stream_through(by_id, script.audio) if r.is_final] == before


async def test_managed_vocabulary_is_created_once_and_reused(emulator: DashScopeEmulator) -> None:
    client = VocabularyClient(FAKE_KEY, base_url=emulator.http_base_url)
    first = await ManagedVocabulary(client, "fun-asr-realtime", ["alpha", "beta"]).ensure()
    again = await ManagedVocabulary(client, "fun-asr-realtime", ["alpha", "beta"]).ensure()
    different = await ManagedVocabulary(client, "fun-asr-realtime", ["alpha"]).ensure()
    assert first == again != different
    assert len(await client.list_all()) == 2


async def test_language_hint_filters_hotwords() -> None:
    script = tone_script(1)
    async with fixture_emulator(script) as emu:
        client = VocabularyClient(FAKE_KEY, base_url=emu.http_base_url)
        vid = await client.create("fun-asr-realtime", "lang", [Hotword("Sentance", 4, "ja")])
        hinted = FunASRRealtime(api_key=FAKE_KEY, base_url=emu.base_url, vocabulary_id=vid, language_hints=["en"])
        unhinted = FunASRRealtime(api_key=FAKE_KEY, base_url=emu.base_url, vocabulary_id=vid)
        assert [r.text for r in await stream_through(hinted, script.audio) if r.is_final] == script.order
        first = next(r.text for r in await stream_through(unhinted, script.audio) if r.is_final)
        assert first.startswith("Sentance")
