#!/usr/bin/python3
"""Renders the chat templates under ../shared/data/tokenizers the way transformers does.

Makes the golden references of the C++ chat-template interpreter (src/model/jinja):

    /usr/bin/python3 scripts/render_chat_templates.py

Run it with Debian's python3 and its python3-jinja2 (3.1.2); transformers is not needed. The
environment is built as transformers' apply_chat_template builds it
(utils/chat_template_utils.py, _compile_jinja_template and render_jinja_template): jinja2's
ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and the loopcontrols extension, the
`generation` tag, `tojson` replaced by json.dumps with ensure_ascii=False, and the globals
`raise_exception` (raises TemplateError) and `strftime_now`.

Templates: every chat_template*.jinja file and every `chat_template` field of a
*tokenizer_config.json (a string, or a list of {"name", "template"}), named by their path under
the tokenizers folder
("llama3/chat_template.Llama-3.1-8B-Instruct.jinja", "qwen2/tokenizer_config.json"; a named
template of a list gets "#name"). Sources are not copied: the C++ test reads them from the same
folder.

It writes into tests/data/chat_templates/:
  cases.json     the conversations, the tool list, and each template's extra context
                 (bos_token, eos_token, and date_string for the Llama 3 templates so renders do not
                 depend on today's date);
  expected.json  for every template, conversation and add_generation_prompt value, the rendered
                 string, or the error the render raised ("expected_error", with "error_type").

The context of a render is, in this order: messages, tools (the tool list when the conversation
says "tools": true, else null), documents (null), add_generation_prompt, then the template's
extra context. transformers passes tools and documents as null when absent; so does the test.
"""
import argparse
import datetime
import glob
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TOKENIZERS = os.path.join(ROOT, "..", "shared", "data", "tokenizers")
DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "chat_templates")

# Special tokens per model family, chosen by the template's name.
LLAMA3 = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
          "date_string": "26 Jul 2024"}
MISTRAL = {"bos_token": "<s>", "eos_token": "</s>"}
QWEN2 = {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>"}
DEEPSEEK = {"bos_token": "<\uff5cbegin\u2581of\u2581sentence\uff5c>",
            "eos_token": "<\uff5cend\u2581of\u2581sentence\uff5c>"}
LLAMA2 = {"bos_token": "<s>", "eos_token": "</s>"}

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a city (\u00b0C or \u00b0F).",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city, e.g. \"Paris\""},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}]

SYSTEM = {"role": "system", "content": "You are a concise assistant."}
USER_1 = {"role": "user", "content": "Hello! What can you do?"}
ASSISTANT_1 = {"role": "assistant", "content": "I answer questions and write text."}
USER_2 = {"role": "user", "content": "Write a haiku about the sea."}
TOOL_CALL = {"role": "assistant", "content": None, "tool_calls": [{
    "id": "call0001A", "type": "function",
    "function": {"name": "get_current_weather",
                 "arguments": {"location": "Paris", "unit": "celsius"}}}]}
TOOL_CALL_STRING_ARGS = {"role": "assistant", "content": None, "tool_calls": [{
    "id": "call0001A", "type": "function",
    "function": {"name": "get_current_weather",
                 "arguments": "{\"location\": \"Paris\", \"unit\": \"celsius\"}"}}]}
TOOL_RESULT = {"role": "tool", "tool_call_id": "call0001A", "name": "get_current_weather",
               "content": "{\"temperature\": 22.5, \"unit\": \"celsius\"}"}
TOOL_RESULT_NUMBER = {"role": "tool", "tool_call_id": "call0001A", "name": "get_current_weather",
                      "content": "22.5"}
WEATHER_QUESTION = {"role": "user", "content": "What's the weather in Paris?"}

# name -> (messages, uses tools, add_generation_prompt values, only for templates mentioning)
CONVERSATIONS = {
    "user": ([USER_1], False, [False, True], None),
    "system_user": ([SYSTEM, USER_1], False, [False, True], None),
    "multi_turn": ([USER_1, ASSISTANT_1, USER_2], False, [False, True], None),
    "system_multi_turn": ([SYSTEM, USER_1, ASSISTANT_1, USER_2], False, [True], None),
    "assistant_last": ([SYSTEM, USER_1, ASSISTANT_1], False, [False], None),
    "consecutive_users": ([USER_1, USER_2, ASSISTANT_1], False, [False], None),
    "whitespace_unicode": ([
        {"role": "system", "content": "  Sois bref. \u2014 \u201cmerci\u201d\n"},
        {"role": "user", "content": "\tCaf\u00e9 \u2615 ou th\u00e9 \U0001F375 ?  \n\n"},
    ], False, [True], None),
    "content_blocks": ([
        {"role": "user", "content": [{"type": "text", "text": "Describe the sea."}]},
    ], False, [True], None),
    "assistant_first": ([ASSISTANT_1, USER_1], False, [True], None),
    "tools": ([SYSTEM, WEATHER_QUESTION], True, [True], "tools"),
    "tools_no_system": ([WEATHER_QUESTION], True, [True], "tools"),
    "tool_call": ([WEATHER_QUESTION, TOOL_CALL, TOOL_RESULT], True, [False, True], "tool_calls"),
    "tool_call_string_arguments": ([WEATHER_QUESTION, TOOL_CALL_STRING_ARGS, TOOL_RESULT_NUMBER],
                                   True, [True], "tool_calls"),
}


def family_settings(name):
    lower = name.lower()
    if "deepseek" in lower:
        return dict(DEEPSEEK)
    if lower.startswith("llama3/"):
        return dict(LLAMA3)
    if lower.startswith("mistral/"):
        return dict(MISTRAL)
    if lower.startswith("qwen2/"):
        return dict(QWEN2)
    if lower.startswith("llama2/"):
        return dict(LLAMA2)
    raise SystemExit(f"no special tokens known for template {name}")


class GenerationTag(jinja2.ext.Extension):
    """transformers' {% generation %} tag, which renders its body (it only tracks positions)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def find_templates(tokenizers):
    templates = {}
    for path in sorted(glob.glob(os.path.join(tokenizers, "*", "chat_template*.jinja"))):
        with open(path, encoding="utf-8") as f:
            templates[os.path.relpath(path, tokenizers)] = f.read()
    for path in sorted(glob.glob(os.path.join(tokenizers, "*", "*tokenizer_config.json"))):
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        template = config.get("chat_template")
        name = os.path.relpath(path, tokenizers)
        if isinstance(template, str):
            templates[name] = template
        elif isinstance(template, list):
            for item in template:
                templates[f"{name}#{item['name']}"] = item["template"]
    return templates


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizers", default=DEFAULT_TOKENIZERS)
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()

    templates = find_templates(args.tokenizers)
    if not templates:
        raise SystemExit(f"no chat templates under {args.tokenizers}")
    env = make_environment()
    settings = {name: family_settings(name) for name in templates}
    renders = []
    for name, source in templates.items():
        compiled = env.from_string(source)
        for case, (messages, uses_tools, generation_prompts, needs) in CONVERSATIONS.items():
            if needs is not None and needs not in source:
                continue
            for add_generation_prompt in generation_prompts:
                context = {"messages": messages, "tools": TOOLS if uses_tools else None,
                           "documents": None, "add_generation_prompt": add_generation_prompt,
                           **settings[name]}
                entry = {"template": name, "case": case,
                         "add_generation_prompt": add_generation_prompt}
                try:
                    entry["expected"] = compiled.render(**context)
                except Exception as e:  # the C++ render must fail as well
                    entry["expected_error"] = str(e)
                    entry["error_type"] = type(e).__name__
                renders.append(entry)

    os.makedirs(args.out, exist_ok=True)
    cases = {
        "generated_by": "scripts/render_chat_templates.py with jinja2 " + jinja2.__version__,
        "context": "messages, tools (the tool list if the conversation uses tools, else null), "
                   "documents (null), add_generation_prompt, then the template's settings",
        "tools": TOOLS,
        "conversations": {case: {"messages": messages, "tools": uses_tools}
                          for case, (messages, uses_tools, _, _) in CONVERSATIONS.items()},
        "templates": settings,
    }
    with open(os.path.join(args.out, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"generated_by": cases["generated_by"], "renders": renders}, f,
                  ensure_ascii=False, indent=1)
        f.write("\n")
    errors = sum("expected_error" in r for r in renders)
    print(f"{len(templates)} templates, {len(renders)} renders ({errors} expected errors)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
