import pytest

from predictor.errors import InvalidParam
from predictor.openai.protocol import ChatCompletionRequest, CompletionRequest, parse_request

HELLO = [{"role": "user", "content": "hi"}]


def test_chat_request_maps_to_generation_params():
    request = parse_request(
        ChatCompletionRequest,
        {
            "model": "m",
            "messages": HELLO,
            "max_completion_tokens": 7,
            "stop": "\n",
            "seed": 3,
            "top_p": 0.5,
        },
    )
    params = request.generation_params()
    assert (params.max_tokens, params.stop, params.seed, params.top_p) == (7, ("\n",), 3, 0.5)


def test_text_content_parts_are_joined_and_developer_is_system():
    request = parse_request(
        ChatCompletionRequest,
        {
            "model": "m",
            "messages": [
                {
                    "role": "developer",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            ],
        },
    )
    assert request.generation_input().messages == [{"role": "system", "content": "ab"}]


def test_unknown_fields_are_ignored_like_the_openai_api():
    request = parse_request(
        CompletionRequest, {"model": "m", "prompt": "x", "user": "u", "frequency_penalty": 0}
    )
    assert request.generation_input().text == "x"


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"model": "m", "messages": HELLO, "n": 2}, "n"),
        ({"model": "m", "messages": HELLO, "logprobs": True}, "logprobs"),
        ({"model": "m", "messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": HELLO, "top_p": 0}, "top_p"),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            },
            "messages.0.content.str",
        ),
        ({"messages": HELLO}, "model"),
    ],
)
def test_invalid_fields_are_named_by_their_path(payload: dict, param: str):
    with pytest.raises(InvalidParam) as caught:
        parse_request(ChatCompletionRequest, payload)
    assert caught.value.param == param


@pytest.mark.parametrize("logprobs", [0, 0.0, 1, True])
def test_any_completions_logprobs_is_refused_not_ignored(logprobs: object):
    # 0 == False in Python: a plain "not in (None, False)" check let logprobs: 0 through.
    with pytest.raises(InvalidParam) as caught:
        parse_request(CompletionRequest, {"model": "m", "prompt": "x", "logprobs": logprobs})
    assert caught.value.param == "logprobs"


def test_absent_logprobs_and_tools_are_accepted():
    for absent in ({}, {"logprobs": None}, {"logprobs": False}, {"tools": []}):
        parse_request(CompletionRequest, {"model": "m", "prompt": "x", **absent})


def test_batched_prompts_and_echo_are_refused():
    with pytest.raises(InvalidParam):
        parse_request(CompletionRequest, {"model": "m", "prompt": ["a", "b"]})
    with pytest.raises(InvalidParam):
        parse_request(CompletionRequest, {"model": "m", "prompt": "a", "echo": True})


def test_a_body_that_is_not_an_object_is_refused():
    with pytest.raises(InvalidParam, match="JSON object"):
        parse_request(CompletionRequest, [1, 2])
