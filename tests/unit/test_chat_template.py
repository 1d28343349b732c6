import pytest

from predictor.backends.chat_template import ChatTemplate, ChatTemplateError

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_renders_messages_and_the_generation_prompt():
    text = ChatTemplate(CHATML).render([{"role": "user", "content": "hi"}])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_bos_and_eos_tokens_are_available_to_the_template():
    template = ChatTemplate(
        "{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}",
        bos_token="<s>",
        eos_token="</s>",
    )
    assert template.render([{"role": "user", "content": "x"}]) == "<s>x</s>"


def test_raise_exception_in_a_template_becomes_a_chat_template_error():
    template = ChatTemplate(
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('must start with user') }}{% endif %}"
    )
    with pytest.raises(ChatTemplateError, match="must start with user"):
        template.render([{"role": "assistant", "content": "x"}])


@pytest.mark.parametrize(
    "payload",
    [
        # CVE-2024-34359 style: walk from a string to os via Python internals.
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ self.__init__.__globals__['os'].system('touch /tmp/kzero-pwned') }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    ],
)
def test_injection_payloads_cannot_reach_python_internals(payload: str):
    with pytest.raises(ChatTemplateError):
        ChatTemplate(payload).render([{"role": "user", "content": "x"}])


def test_templates_cannot_mutate_the_messages_they_are_given():
    messages = [{"role": "user", "content": "x"}]
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{{ messages.append({'role': 'system'}) }}").render(messages)
    assert messages == [{"role": "user", "content": "x"}]


def test_a_template_that_does_not_compile_is_reported():
    with pytest.raises(ChatTemplateError, match="does not compile"):
        ChatTemplate("{% for %}")
