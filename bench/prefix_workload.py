"""What ``kzero bench prefix`` asks: chats that all start with one long system prompt.

The system prompt is a customer-support policy of about 1,000 tokens (SmolLM2's
tokenizer), written out below as sections of rules, so its text is the same in
every run and reads like a real deployment's instructions rather than filler.
Every conversation opens with a different customer (an order number derived
from its key), so apart from the system prompt no two conversations share a
prefix, and no conversation repeats across rounds, concurrency levels, the
warm-up and the cold starts: what a server reuses is the shared system prompt
and each conversation's own history, never an earlier run of the same chat.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

# (heading, rules): rendered as a Markdown-like document.
POLICY: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Who you are",
        (
            "You are Fern, the customer support assistant of Larchmont Outdoor Supply, an "
            "online shop for camping, hiking and climbing gear that ships to customers in "
            "the United States and Canada.",
            "You answer customers in the chat window on the website and in the mobile app. "
            "You cannot see the customer's screen, and you cannot place calls or send emails.",
            "Be warm, calm and brief. Customers who write to support usually have a problem, "
            "so acknowledge it in one sentence before you explain what happens next.",
        ),
    ),
    (
        "Orders and delivery",
        (
            "Orders placed before 2 p.m. Eastern time on a business day leave our warehouse "
            "the same day; later orders leave the next business day.",
            "Standard delivery takes three to six business days, express delivery one to two. "
            "Remote addresses in Alaska, Hawaii and northern Canada can take up to ten days.",
            "If tracking has not changed for five business days, open a carrier trace. Tell "
            "the customer that a trace takes up to three business days to answer.",
            "A delivery address can be changed only while the order status is 'Processing'. "
            "Once the status is 'Shipped', offer a carrier redirect instead, which may cost "
            "a fee that the carrier sets.",
        ),
    ),
    (
        "Returns and exchanges",
        (
            "Unused items can be returned within 60 days of delivery for a full refund. "
            "Items that were used outdoors can be returned within 30 days for store credit.",
            "Tags may be removed, but the item must be clean and complete, with all straps, "
            "stakes, stuff sacks and manuals.",
            "Return shipping is free for members of the Larchmont Trail Club and for items "
            "that arrived damaged or wrong. Other customers pay a flat fee of eight dollars, "
            "taken from the refund.",
            "Exchanges for another size or colour are free once per order. Reserve the new "
            "item when the return label is created, so it cannot sell out in the meantime.",
        ),
    ),
    (
        "Damaged, missing or wrong items",
        (
            "Ask for a photo of the damage and of the shipping label before you offer a "
            "replacement. One clear photo is enough; do not ask for a video.",
            "If a customer received someone else's parcel, thank them, send a prepaid label "
            "for it, and ship their own order again at no cost.",
        ),
    ),
    (
        "Warranty and repairs",
        (
            "Larchmont-brand tents, packs and sleeping bags carry a lifetime warranty against "
            "defects in materials and workmanship. Other brands follow their maker's warranty, "
            "and you help the customer file the claim.",
            "Wear and tear, damage from animals, fire or accidents, and changes made by the "
            "customer are not defects. Offer our repair service at cost in those cases.",
            "Footwear is covered for one year. A sole that separates from the upper within "
            "that year is a defect.",
        ),
    ),
    (
        "Payments, refunds and prices",
        (
            "Refunds go back to the original payment method within five business days after "
            "the warehouse receives the return. Banks can take another three to five days.",
            "If a customer sees a duplicate charge, it is usually a card authorisation that "
            "expires on its own within seven days. If both charges have settled, refund the "
            "duplicate at once.",
            "We match the price of authorised retailers for identical items in stock, within "
            "14 days of purchase. We do not match auction sites, coupons or clearance sales.",
            "Up to two gift cards can be combined with one card or wallet payment per order.",
        ),
    ),
    (
        "Accounts and privacy",
        (
            "Never ask for a full card number, a password or a one-time code. To verify an "
            "account, ask for the order number and the postcode of the delivery address.",
            "Password resets are sent to the email on the account. You cannot change that "
            "email in chat; the customer must use the account page or contact the privacy team.",
        ),
    ),
    (
        "Safety",
        (
            "If a stove, lantern or heater leaks fuel, smells of gas or shows a damaged seal, "
            "tell the customer to stop using it at once, to keep it outdoors and away from "
            "flames, and offer a replacement.",
            "Do not give medical, legal or route-finding advice. For emergencies in the "
            "backcountry, tell the customer to call the local emergency number.",
        ),
    ),
    (
        "When to hand over to a person",
        (
            "Hand the chat to a human agent when the customer asks for one, when a refund "
            "above 500 dollars is needed, when a product may have caused an injury, or "
            "when you have answered the same question twice and the customer is still stuck.",
            "Before you hand over, summarise the problem and what you have already tried in "
            "two or three sentences, so the customer does not have to repeat it.",
        ),
    ),
    (
        "How to answer",
        (
            "Keep answers under 120 words unless the customer asks for detail. Use short "
            "numbered steps when the customer has to do something.",
            "End with the next step and who takes it: the customer, the warehouse, the "
            "carrier or you.",
        ),
    ),
)


def render_policy(policy: Sequence[tuple[str, Sequence[str]]] = POLICY) -> str:
    sections = [
        f"# {heading}\n" + "\n".join(f"- {rule}" for rule in rules) for heading, rules in policy
    ]
    return "\n\n".join(sections)


SYSTEM_PROMPT = render_policy()

# A customer's opening message; {order} makes each conversation its own.
OPENINGS: tuple[str, ...] = (
    "Hi, I ordered a two-person tent last week (order {order}) and one of the poles arrived "
    "bent. What can I do?",
    "My order {order} was supposed to arrive on Monday, but the tracking has not changed for "
    "five days. Where is it?",
    "I bought hiking boots with order {order} and the sole started to come off after three "
    "months. Is that covered?",
    "Can I exchange the sleeping bag from order {order} for a warmer model? I have not used it.",
    "I was charged twice for order {order}. Can you check what happened?",
    "I want to return a rain jacket from order {order}, but I already cut the tags off. "
    "Is that still possible?",
    "Please change the delivery address of order {order} to my office. It has not shipped yet.",
    "The camping stove from order {order} leaks gas at the connector. Is it safe to keep using it?",
    "I forgot the password of the account I used for order {order}. How do I get back in?",
    "Do you price match? I saw the backpack from order {order} for less on another site.",
    "I received someone else's parcel instead of my order {order}. What should I do with it?",
    "Can I pay for an order like {order} with two gift cards and my credit card together?",
)

# The customer's later turns, in rotation.
FOLLOW_UPS: tuple[str, ...] = (
    "Thanks. How long will that take?",
    "Can you sum that up in two short steps?",
    "And what if that does not work?",
    "Do I need to send any photos or documents?",
    "Will I have to pay for shipping?",
    "Can you confirm what happens next?",
    "Is there a phone number I can call instead?",
)

WARMUP_MESSAGE = "Hello Fern, are you there? I have a quick question about my account."

# Key ranges, so the measured conversations, the warm-up, the chats that warm a
# prefix directory and the cold-start requests never meet.
MEASURED_KEYS = 0
WARMING_KEYS = 500_000
COLD_KEYS = 600_000
ORDER_NUMBER_STRIDE = 7919  # prime, so distinct keys below 900,000 give distinct numbers


def order_number(key: int) -> str:
    return f"LOS-{100_000 + (key * ORDER_NUMBER_STRIDE) % 900_000}"


@dataclass(frozen=True)
class Conversation:
    """One customer's chat: the user turns, sent one by one after each answer."""

    key: int
    user_turns: tuple[str, ...]


def conversation(key: int, turns: int) -> Conversation:
    """The chat with this key: an opening naming its order, then follow-ups in rotation."""
    if turns < 1 or turns > len(FOLLOW_UPS) + 1:
        raise ValueError(f"turns must be between 1 and {len(FOLLOW_UPS) + 1}, got {turns}")
    opening = OPENINGS[key % len(OPENINGS)].format(order=order_number(key))
    follow_ups = tuple(FOLLOW_UPS[(key + t) % len(FOLLOW_UPS)] for t in range(turns - 1))
    return Conversation(key, (opening, *follow_ups))


def messages(
    system_prompt: str, history: Sequence[tuple[str, str | None]], next_user: str
) -> list[dict[str, str]]:
    """The request's messages: the system prompt, the turns so far (user, the assistant's
    real answer), and the new user turn."""
    result = [{"role": "system", "content": system_prompt}]
    for user, answer in history:
        result.append({"role": "user", "content": user})
        result.append({"role": "assistant", "content": answer or ""})
    result.append({"role": "user", "content": next_user})
    return result


def request_body(model: str, chat: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "messages": chat,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        # Not OpenAI: llama_cpp.server defaults to 1.1, which changes the greedy
        # tokens; 1.0 (off) is kzero's and llama-server's. The others ignore it.
        "repeat_penalty": 1.0,
    }


@dataclass(frozen=True)
class ChatBatch:
    """The conversations one setup runs at one concurrency level in one round."""

    round_index: int
    concurrency: int
    conversations: tuple[Conversation, ...]


@dataclass(frozen=True)
class PrefixWorkload:
    """Every setup gets the same conversations, in the same order, round by round."""

    conversations: int = 6
    turns: int = 3
    rounds: int = 3
    concurrency: tuple[int, ...] = (1, 4)
    max_tokens: int = 24
    system_prompt: str = SYSTEM_PROMPT

    def __post_init__(self) -> None:
        conversation(0, self.turns)  # checks turns
        if self.conversations < 1 or not self.concurrency or min(self.concurrency) < 1:
            raise ValueError("conversations and concurrency levels must be positive")
        if self.rounds * len(self.concurrency) * self.conversations > WARMING_KEYS:
            raise ValueError("too many conversations for distinct keys")

    def schedule(self) -> Iterator[ChatBatch]:
        """Rounds, then concurrency levels; every batch has conversations of its own."""
        key = MEASURED_KEYS
        for round_index in range(self.rounds):
            for concurrency in self.concurrency:
                chats = tuple(conversation(key + i, self.turns) for i in range(self.conversations))
                yield ChatBatch(round_index, concurrency, chats)
                key += self.conversations


def warming_conversations(count: int) -> tuple[Conversation, ...]:
    """Single-turn chats that show a kzero process the system prompt ``count`` times."""
    return tuple(conversation(WARMING_KEYS + i, 1) for i in range(count))


def cold_conversation(index: int) -> Conversation:
    """The first request after a fresh start: the system prompt and one user turn."""
    return conversation(COLD_KEYS + index, 1)
