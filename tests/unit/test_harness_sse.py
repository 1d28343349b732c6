"""The one SSE reader every benchmark and test uses: framing as the HTML standard has it."""

from __future__ import annotations

import pytest

from bench.harness.sse import DONE, StreamTally, content, events


def lines(text: str) -> list[str]:
    return text.split("\n")


def test_events_are_data_lines_up_to_a_blank_line():
    stream = 'data: {"choices": [{"text": "Hi"}]}\n\ndata: [DONE]\n\n'
    assert list(events(lines(stream))) == [{"choices": [{"text": "Hi"}]}, DONE]


def test_data_lines_of_one_event_join_with_newlines_and_comments_are_skipped():
    stream = ': keep-alive\n\ndata: {"a":\ndata: 1}\n\ndata:[DONE]\r\n\r\n'
    assert list(events(lines(stream))) == [{"a": 1}, DONE]


def test_an_event_cut_off_before_its_blank_line_is_not_an_event():
    # A stream that stops mid-event must not look complete.
    assert list(events(lines('data: {"a": 1}\n\ndata: [DONE]'))) == [{"a": 1}]


@pytest.mark.parametrize("payload", ["{not json", "[1, 2]", '"text"'])
def test_a_payload_that_is_not_a_json_object_is_refused(payload: str):
    with pytest.raises(ValueError):
        list(events([f"data: {payload}", ""]))


def test_content_reads_completions_and_chat_chunks():
    assert content({"choices": [{"text": "a"}]}) == "a"
    assert content({"choices": [{"delta": {"content": "b"}}]}) == "b"
    assert content({"choices": [{"delta": {"role": "assistant"}}]}) == ""
    assert content({"choices": [], "usage": {"completion_tokens": 1}}) == ""
    assert content(DONE) == ""


def test_the_tally_keeps_the_first_error_and_reads_on_to_done():
    tally = StreamTally()
    for event in [
        {"choices": [{"delta": {"content": "Hi"}, "finish_reason": None}]},
        {"error": {"message": "engine failed", "code": "engine_error"}},
        {"error": {"message": "second"}},
        DONE,
    ]:
        tally.add(event)
    assert tally.error == {"message": "engine failed", "code": "engine_error"}
    assert tally.done and not tally.complete
    assert tally.text == "Hi" and tally.content_events == 1 and tally.ttft_s is not None


def test_a_whole_stream_is_complete_with_usage_and_gaps():
    tally = StreamTally()
    for event in [
        {"choices": [{"text": "a", "finish_reason": None}]},
        {"choices": [{"text": "b", "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
        DONE,
    ]:
        tally.add(event)
    assert tally.complete and tally.finish_reason == "length"
    assert tally.usage == {"prompt_tokens": 3, "completion_tokens": 2}
    assert len(tally.gaps_s) == 1 and tally.gaps_s[0] >= 0
