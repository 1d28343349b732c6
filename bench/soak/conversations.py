"""What the soak asks: varied chat requests, replayable one by one."""

from __future__ import annotations

from typing import Any

SERVED_NAME = "kzero-soak"

# Varied on purpose: short and long questions, a system prompt or not, one
# multi-turn conversation, so prompt lengths, chat-template paths and answer
# lengths (with sampling on) all differ from request to request.
CONVERSATIONS: tuple[tuple[dict[str, str], ...], ...] = (
    ({"role": "user", "content": "Write a short poem about the sea."},),
    ({"role": "user", "content": "Explain how a bicycle stays upright, step by step."},),
    (
        {"role": "system", "content": "You are a concise assistant. Answer in one paragraph."},
        {"role": "user", "content": "What is the difference between weather and climate?"},
    ),
    ({"role": "user", "content": "List five fruits and one fact about each."},),
    (
        {"role": "user", "content": "My name is Ada. What is a good name for a cat?"},
        {"role": "assistant", "content": "How about Pixel? It suits a curious cat."},
        {"role": "user", "content": "Give me three more ideas, and say why for each."},
    ),
    ({"role": "user", "content": "Hi!"},),
    (
        {"role": "system", "content": "You are a patient teacher for children."},
        {"role": "user", "content": "Why is the sky blue? Tell it as a story about light."},
    ),
    (
        {
            "role": "user",
            "content": "Translate 'good morning, how are you?' into French and Spanish.",
        },
    ),
    ({"role": "user", "content": "Describe a busy market in a small town on a Saturday morning."},),
    ({"role": "user", "content": "What are three tips for writing clear emails at work?"},),
)


def request_body(index: int, max_tokens: int) -> dict[str, Any]:
    return {
        "model": SERVED_NAME,
        "messages": list(CONVERSATIONS[index % len(CONVERSATIONS)]),
        "max_tokens": max_tokens,
        # Sampling with a per-request seed: answers (and so lengths) vary like
        # real traffic, yet a run can be replayed request by request.
        "temperature": 0.8,
        "seed": index,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
