"""The official openai client against a running predictor with the bundled model."""

from __future__ import annotations

import openai
import pytest

from bench.harness.process import PredictorProcess

from .conftest import MODEL_NAME

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def client(predictor: PredictorProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{predictor.url}/v1", api_key="not-needed", max_retries=0, timeout=120
    )


def test_chat_completion_returns_text_and_usage(client: openai.OpenAI):
    response = client.chat.completions.create(
        model=MODEL_NAME, messages=QUESTION, max_tokens=32, temperature=0
    )
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert response.usage.prompt_tokens > 0
    assert 0 < response.usage.completion_tokens <= 32
    assert (
        response.usage.total_tokens
        == response.usage.prompt_tokens + response.usage.completion_tokens
    )


def test_streamed_chat_matches_the_non_streamed_answer_and_reports_usage(client: openai.OpenAI):
    whole = client.chat.completions.create(
        model=MODEL_NAME, messages=QUESTION, max_tokens=32, temperature=0
    )
    stream = client.chat.completions.create(
        model=MODEL_NAME,
        messages=QUESTION,
        max_tokens=32,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert text == whole.choices[0].message.content
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_streamed_chat_without_include_usage_has_no_usage_chunk(client: openai.OpenAI):
    chunks = list(
        client.chat.completions.create(
            model=MODEL_NAME, messages=QUESTION, max_tokens=8, stream=True
        )
    )
    assert all(c.choices for c in chunks)
    assert all(getattr(c, "usage", None) is None for c in chunks)


def test_text_completion_streaming_and_not(client: openai.OpenAI):
    prompt = "The three primary colors are"
    whole = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=16, temperature=0)
    assert whole.choices[0].text
    assert whole.usage.completion_tokens == 16 or whole.choices[0].finish_reason == "stop"
    chunks = list(
        client.completions.create(
            model=MODEL_NAME,
            prompt=prompt,
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_same_prompt_at_temperature_zero_with_a_seed_is_identical(client: openai.OpenAI):
    answers = {
        client.chat.completions.create(
            model=MODEL_NAME, messages=QUESTION, max_tokens=48, temperature=0, seed=7
        )
        .choices[0]
        .message.content
        for _ in range(2)
    }
    assert len(answers) == 1


def test_seeded_sampling_is_reproducible_and_seeds_matter(client: openai.OpenAI):
    def sample(seed: int) -> str:
        story = [{"role": "user", "content": "Invent a name for a cat."}]
        response = client.chat.completions.create(
            model=MODEL_NAME, messages=story, max_tokens=24, temperature=1.0, top_p=0.95, seed=seed
        )
        return response.choices[0].message.content or ""

    assert sample(1234) == sample(1234)
    assert len({sample(seed) for seed in (1, 2, 3, 4)}) > 1


def test_max_tokens_ends_with_finish_reason_length(client: openai.OpenAI):
    response = client.completions.create(
        model=MODEL_NAME, prompt="1, 2, 3, 4,", max_tokens=5, temperature=0
    )
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 5


def test_stop_sequence_ends_the_answer_before_it(client: openai.OpenAI):
    free = client.completions.create(
        model=MODEL_NAME, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0
    )
    assert " 6" in free.choices[0].text
    stopped = client.completions.create(
        model=MODEL_NAME, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0, stop=[" 6"]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].text == free.choices[0].text.split(" 6")[0]


def test_kserve_openai_prefix_serves_the_same_api(predictor: PredictorProcess):
    client = openai.OpenAI(base_url=f"{predictor.url}/openai/v1", api_key="x", max_retries=0)
    response = client.chat.completions.create(model=MODEL_NAME, messages=QUESTION, max_tokens=4)
    assert response.choices[0].message.content is not None


def test_models_list_names_the_served_model(client: openai.OpenAI):
    assert [m.id for m in client.models.list()] == [MODEL_NAME]
