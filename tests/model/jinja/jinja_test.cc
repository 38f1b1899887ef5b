// Unit tests of the chat-template interpreter, one construct at a time. Every expected string was
// rendered by jinja2 3.1.2 in transformers' environment (scripts/render_chat_templates.py builds
// the same one); each case is (template, JSON context, expected output).
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/jinja/jinja.h"

namespace tandem::jinja {
namespace {

struct Case {
  const char* source;
  const char* context;  // a JSON object, or "" for none
  const char* expected;
};

StatusOr<std::string> RenderSource(const std::string& source, const std::string& context) {
  StatusOr<std::unique_ptr<Template>> parsed = Template::Parse(source);
  if (!parsed.ok()) return parsed.status();
  const nlohmann::ordered_json json =
      context.empty() ? nlohmann::ordered_json::object() : nlohmann::ordered_json::parse(context);
  return (*parsed)->RenderOrdered(json);
}

void ExpectRenders(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    const StatusOr<std::string> rendered = RenderSource(c.source, c.context);
    if (!rendered.ok()) {
      ADD_FAILURE() << "template: " << c.source << "\nerror: " << rendered.status();
      continue;
    }
    EXPECT_EQ(*rendered, c.expected) << "template: " << c.source;
  }
}

// The render fails with InvalidArgument and a one-line message containing every part.
void ExpectError(const std::string& source, const std::vector<std::string>& parts,
                 const std::string& context = "") {
  const StatusOr<std::string> rendered = RenderSource(source, context);
  ASSERT_FALSE(rendered.ok()) << "template: " << source << "\nrendered: " << *rendered;
  EXPECT_EQ(rendered.status().code(), StatusCode::kInvalidArgument) << rendered.status();
  EXPECT_EQ(rendered.status().message().find('\n'), std::string::npos) << rendered.status();
  for (const std::string& part : parts) {
    EXPECT_NE(rendered.status().message().find(part), std::string::npos)
        << "missing '" << part << "' in: " << rendered.status();
  }
}

// trim_blocks: the newline right after a block or comment tag is dropped; after {{ }} it stays.
TEST(JinjaWhitespaceTest, TrimBlocksDropsTheNewlineAfterABlockTag) {
  ExpectRenders({
      {"{% if true %}\nyes\n{% endif %}\nafter", "", "yes\nafter"},
      {"{{ 'x' }}\nkept", "", "x\nkept"},
      {"a{# comment #}\nb", "", "ab"},
      {"{% if true +%}\nkept{% endif %}", "", "\nkept"},
  });
}

// lstrip_blocks: spaces and tabs before a block or comment tag that starts its line are dropped.
TEST(JinjaWhitespaceTest, LstripBlocksDropsIndentationBeforeATag) {
  ExpectRenders({
      {"  {% if true %}\n  x\n  {% endif %}\n", "", "  x\n"},
      {"\t{% if true %}\ttab{% endif %}", "", "\ttab"},
      {"text {% if true %}x{% endif %}", "", "text x"},
      {"   {{ 'expressions keep it' }}", "", "   expressions keep it"},
      {"x\n    {# indented comment #}\ny", "", "x\ny"},
      {"  {%+ if true %}plus keeps it{% endif %}", "", "  plus keeps it"},
  });
}

// A - inside a tag strips all whitespace (newlines too) on that side.
TEST(JinjaWhitespaceTest, MinusStripsAllWhitespace) {
  ExpectRenders({
      {"a  \n  {%- if true -%}  \n  b  \n  {%- endif -%}  \n  c", "", "abc"},
      {"{{- '  x  ' -}}   \n  y", "", "  x  y"},
      {"x  {#- gone -#}  y", "", "xy"},
      {"{% for i in [1, 2] -%}\n  {{ i }}\n{%- endfor %}", "", "12"},
  });
}

// Raw blocks are output verbatim; \r\n becomes \n and one trailing newline is dropped.
TEST(JinjaWhitespaceTest, RawBlocksAndNewlines) {
  ExpectRenders({
      {"<{% raw %}{{ not evaluated }} {% if %}{% endraw %}>", "", "<{{ not evaluated }} {% if %}>"},
      {"a\n{% raw -%}\n   b\n   {%- endraw %}\nc", "", "a\nbc"},
      {"line1\r\nline2\rline3\n", "", "line1\nline2\nline3"},
      {"{{ 'a' }}\n\n", "", "a\n"},
  });
}

// The loop variable of jinja2.
TEST(JinjaLoopTest, LoopVariables) {
  ExpectRenders({
      {"{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ "
       "loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}",
       "", "1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;"},
      {"{% for x in [1, 2, 3] %}[{{ loop.previtem }}|{{ loop.nextitem }}]{% endfor %}", "",
       "[|2][1|3][2|]"},
      {"{% for x in range(5) %}{{ loop.cycle('a', 'b') }}{% endfor %}", "", "ababa"},
      {"{% for x in [1, 1, 2, 2, 1] %}{{ loop.changed(x) }} {% endfor %}", "",
       "True False True False True "},
      {"{% for x in [1] %}{{ loop }}{% endfor %}", "", "<LoopContext 1/1>"},
  });
}

// for ... else, for ... if, tuple targets, break and continue.
TEST(JinjaLoopTest, ElseFilterUnpackAndLoopControls) {
  ExpectRenders({
      {"{% for x in [] %}x{% else %}empty{% endfor %}", "", "empty"},
      {"{% for x in range(10) if x is odd %}{{ x }}{{ loop.length }},{% endfor %}", "",
       "15,35,55,75,95,"},
      {"{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }};{% endfor %}", "", "b=1;a=2;"},
      {"{% for (a, b) in [[1, 2], [3, 4]] %}{{ a * b }} {% endfor %}", "", "2 12 "},
      {"{% for x in [1, 2, 3, 4, 5] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% "
       "break %}{% endif %}{{ x }}{% endfor %}",
       "", "13"},
      {"{% for row in [[1, 2], [3]] %}{% for x in row %}{{ loop.index }}:{{ x }} {% endfor %}/{{ "
       "loop.index }} {% endfor %}",
       "", "1:1 2:2 /1 1:3 /2 "},
      {"{% for c in 'hé!' %}[{{ c }}]{% endfor %}{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor "
       "%}",
       "", "[h][é][!]xy"},
  });
}

// set inside a for loop is local to its iteration; namespace() carries state out; if blocks share
// the scope.
TEST(JinjaScopeTest, SetScoping) {
  ExpectRenders({
      {"{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}", "",
       "231"},
      {"{% for i in [1, 2] %}{% if loop.first %}{% set a = 5 %}{% endif %}[{{ a }}]{% endfor %}",
       "", "[5][]"},
      {"{% set ns = namespace(total=0, seen=[]) %}{% for i in [1, 2, 3] %}{% set ns.total = "
       "ns.total + i %}{% set ns.seen = ns.seen + [i] %}{% endfor %}{{ ns.total }} {{ ns.seen }} "
       "{{ ns }}",
       "", "6 [1, 2, 3] <Namespace {'total': 6, 'seen': [1, 2, 3]}>"},
      {"{% set ns = namespace() %}{% set ns.late = 'added' %}{{ ns.late }}{{ ns['late'] }}", "",
       "addedadded"},
      {"{% if true %}{% set q = 3 %}{% endif %}{{ q }}", "", "3"},
      {"{% set a, b = 'xy' %}{{ b }}{{ a }}{% set t = 1, 2 %}{{ t }}", "", "yx(1, 2)"},
      {"{% set block %}  {{ 1 + 1 }} items  {% endset %}[{{ block }}]{% set up | trim | upper %}  "
       "hi  {% endset %}[{{ up }}]",
       "", "[  2 items  ][HI]"},
      {"{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]", "", "3[]"},
      {"{% filter upper %}shout {{ 'this' }}{% endfilter %}", "", "SHOUT THIS"},
      {"{% set messages = messages[1:] %}{{ messages | length }}",
       "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", "
       "\"content\": \"yo\"}]}",
       "1"},
  });
}

// Macros with defaults, keyword arguments, varargs/kwargs, caller, recursion and closures.
TEST(JinjaMacroTest, MacrosAndCallBlocks) {
  ExpectRenders({
      {"{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} "
       "{{ greet('B', '?') }} {{ greet(punct='.', name='C') }}",
       "", "Hi A! Hi B? Hi C."},
      {"{% macro m(a, b=a ~ 'x') %}{{ a }}{{ b }}{% endmacro %}{{ m('q') }}", "", "qqx"},
      {"{% macro m(a) %}[{{ a }}]{% endmacro %}{{ m() }}", "", "[]"},
      {"{% macro m() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, k=3) }}", "",
       "(1, 2){'k': 3}"},
      {"{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') "
       "%}bold{% endcall %}",
       "", "<b>bold</b>"},
      {"{% macro each(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% "
       "call(x) each([1, 2]) %}<{{ x * 10 }}>{% endcall %}",
       "", "<10><20>"},
      {"{% macro countdown(n) %}{% if n > 0 %}{{ n }}{{ countdown(n - 1) }}{% endif %}{% endmacro "
       "%}{{ countdown(3) }}",
       "", "321"},
      {"{% set x = 1 %}{% macro show() %}{{ x }}{% endmacro %}{% set x = 2 %}{{ show() }}", "",
       "2"},
      {"{% macro show() %}[{{ y }}]{% endmacro %}{% for y in [1] %}{{ show() }}{% endfor %}", "",
       "[]"},
      {"{% macro m() -%}\n  body\n{%- endmacro %}[{{ m() }}]{{ m }}", "", "[body]<Macro 'm'>"},
  });
}

// Filters on strings.
TEST(JinjaFilterTest, StringFilters) {
  ExpectRenders({
      {"{{ '  a b  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ 'hello world-wide (x)' | title }}|{{ "
       "'hELLO wORLD' | capitalize }}|{{ 'Ab' | upper }}{{ 'Ab' | lower }}",
       "", "a b|a|Hello World-Wide (X)|Hello world|ABab"},
      {"{{ 'aXbX' | replace('X', 'y') }}|{{ 'aXbX' | replace('X', 'y', 1) }}|{{ 12321 | "
       "replace('2', '') }}",
       "", "ayby|aybX|131"},
      {"{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent('> ', "
       "blank=true) }}",
       "", "a\n    b\n\n    c|  a\n  b|a\n> \n> b"},
      {"{{ 'ab' | center(6) }}|{{ 'one two  three' | wordcount }}|{{ 'Hello World, how are you' | "
       "truncate(15) }}|{{ 'Hello World' | truncate(9, true) }}",
       "", "  ab  |3|Hello...|Hello World"},
      {"{{ '%s=%d' | format('x', 3) }}|{{ '%(a)s' | format(a='kw') }}|{{ 'héllo' | length }}|{{ "
       "'abc' | reverse }}|{{ 'abc' | first }}{{ 'abc' | last }}",
       "{\"d\": {\"a\": 1}}", "x=3|kw|5|cba|ac"},
      {"{{ 42 | string ~ '!' }}|{{ none | string }}|{{ [1, 'a'] | string }}", "",
       "42!|None|[1, 'a']"},
  });
}

// int, float, round and abs with Python conversions.
TEST(JinjaFilterTest, NumberFilters) {
  ExpectRenders({
      {"{{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.9 | int }} {{ ' "
       "1_000 ' | int }} {{ 'ff' | int(base=16) }} {{ true | int }} {{ none | int }}",
       "", "42 4 0 7 3 1000 255 1 0"},
      {"{{ '2.50' | float }} {{ 'x' | float }} {{ 3 | float }} {{ '1e3' | float }} {{ '-inf' | "
       "float }}",
       "", "2.5 0.0 3.0 1000.0 -inf"},
      {"{{ 2.5 | round }} {{ 3.5 | round }} {{ 2.675 | round(2) }} {{ 1234.5 | round(-2) }} {{ 2.1 "
       "| round(0, 'ceil') }} {{ 2.9 | round(method='floor') }} {{ 7 | round }}",
       "", "2.0 4.0 2.67 1200.0 3.0 2.0 7"},
      {"{{ -3 | abs }} {{ -2.5 | abs }} {{ [1, 2, 3] | sum }} {{ [{'v': 1.5}, {'v': 2}] | "
       "sum(attribute='v') }} {{ [3, 1, 2] | max }} {{ ['b', 'A'] | min }}",
       "", "3 2.5 6 3.5 3 A"},
  });
}

// Filters on lists and dicts.
TEST(JinjaFilterTest, SequenceFilters) {
  ExpectRenders({
      {"{{ [1, 2, 'a'] | join(', ') }}|{{ ['a', 'b'] | join }}|{{ [{'n': 'x'}, {'n': 'y'}] | "
       "join('/', attribute='n') }}",
       "", "1, 2, a|ab|x/y"},
      {"{{ [3, 4] | first }}{{ [3, 4] | last }}{{ [] | first }}|{{ [1, 2] | length }}{{ {'a': 1} | "
       "count }}",
       "", "34|21"},
      {"{{ 'ab' | list }}{{ {'a': 1, 'b': 2} | list }}{{ {'a': 1} | items | list }}{{ [3, 1, 2, 1] "
       "| unique | list }}{{ [3, 1, 2] | reverse | list }}",
       "", "['a', 'b']['a', 'b'][('a', 1)][3, 1, 2][2, 1, 3]"},
      {"{{ [3, 1, 2] | sort }}{{ ['b', 'A', 'c'] | sort }}{{ [3, 1, 2] | sort(reverse=true) }}{{ "
       "[{'a': 2, 'b': 1}, {'a': 1, 'b': 2}] | sort(attribute='a') }}",
       "", "[1, 2, 3]['A', 'b', 'c'][3, 2, 1][{'a': 1, 'b': 2}, {'a': 2, 'b': 1}]"},
      {"{{ {'b': 1, 'a': 2} | dictsort }}{{ {'b': 1, 'a': 2} | dictsort(by='value') }}", "",
       "[('a', 2), ('b', 1)][('b', 1), ('a', 2)]"},
      {"{{ [1, 2, 3, 4] | select('odd') | list }}{{ [1, 0, 2] | select | list }}{{ [1, 2, 3, 4] | "
       "reject('even') | list }}{{ [1, 2, 3] | select('gt', 1) | list }}",
       "", "[1, 3][1, 2][1, 3][2, 3]"},
      {"{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }}{{ "
       "messages | rejectattr('role', 'in', ['user']) | list | length }}",
       "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", "
       "\"content\": \"yo\"}]}",
       "['hi']1"},
      {"{{ [{'a': 1}, {}] | map(attribute='a', default=0) | list }}{{ ['a', 'b'] | map('upper') | "
       "join }}{{ [[1, 2], [3, 4]] | map(attribute='1') | list }}",
       "", "[1, 0]AB[2, 4]"},
      {"{{ [1, 2, 3, 4, 5] | batch(2) | list }}{{ x | default('fallback') }}{{ '' | "
       "default('empty', true) }}{{ none | d('n') }}",
       "{\"d\": {\"a\": 1}}", "[[1, 2], [3, 4], [5]]fallbackemptyNone"},
      {"{{ {'a': 1} | attr('items') is callable }}{{ 'x' | attr('upper') is callable }}", "",
       "TrueTrue"},
      {"{% if [] | select %}a generator is truthy even when empty{% endif %}|{{ [] | select | list "
       "| length }}|{{ [0] | map('string') | first }}",
       "", "a generator is truthy even when empty|0|0"},
  });
}

// transformers' tojson: json.dumps with ensure_ascii=False and Python's separators.
TEST(JinjaFilterTest, ToJsonMatchesTransformers) {
  ExpectRenders({
      {"{{ {'b': 1, 'a': [1, 'é', none, true, 1.5, 1e100]} | tojson }}", "",
       "{\"b\": 1, \"a\": [1, \"é\", null, true, 1.5, 1e+100]}"},
      {"{{ {'a': {'b': []}, 'c': {}} | tojson(indent=2) }}", "",
       "{\n  \"a\": {\n    \"b\": []\n  },\n  \"c\": {}\n}"},
      {"{{ [1, {'a': 2}] | tojson(indent=4) }}", "",
       "[\n    1,\n    {\n        \"a\": 2\n    }\n]"},
      {"{{ {'b': 1, 'a': 2} | tojson(sort_keys=true, separators=(',', ':')) }}", "",
       "{\"a\":2,\"b\":1}"},
      {"{{ 'x<y & \"q\"\\n\\u0001\\u2028😀' | tojson }}{{ 'é😀' | tojson(ensure_ascii=true) }}", "",
       "\"x<y & \\\"q\\\"\\n\\u0001 😀\"\"\\u00e9\\ud83d\\ude00\""},
      {"{{ tool | tojson }}",
       "{\"tool\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}}",
       "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}"},
      {"{{ tool | tojson }}|{{ tool.arguments | tojson(indent='\\t') }}",
       "{\"tool\": {\"name\": \"f\", \"arguments\": {\"z\": 1, \"a\": [2.0, \"é\", null]}}}",
       "{\"name\": \"f\", \"arguments\": {\"z\": 1, \"a\": [2.0, \"é\", null]}}|{\n\t\"z\": "
       "1,\n\t\"a\": [\n\t\t2.0,\n\t\t\"é\",\n\t\tnull\n\t]\n}"},
  });
}

// jinja2 tests (`x is ...`).
TEST(JinjaTestTest, Tests) {
  ExpectRenders({
      {"{{ 3 is odd }}{{ 3 is even }}{{ 6 is divisibleby 3 }}{{ 6 is divisibleby(4) }}", "",
       "TrueFalseTrueFalse"},
      {"{{ x is defined }}{{ x is undefined }}{{ none is none }}{{ 0 is none }}{{ none is not none "
       "}}",
       "", "FalseTrueTrueFalseFalse"},
      {"{{ 'a' is string }}{{ 1 is number }}{{ 1.0 is number }}{{ true is number }}{{ 1 is integer "
       "}}{{ true is integer }}{{ 1.0 is float }}{{ true is boolean }}",
       "", "TrueTrueTrueTrueTrueFalseTrueTrue"},
      {"{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 0 is false }}", "",
       "TrueFalseTrueFalse"},
      {"{{ {} is mapping }}{{ [] is mapping }}{{ [] is sequence }}{{ 'a' is sequence }}{{ 1 is "
       "iterable }}{{ 'a' is iterable }}{{ {} is iterable }}",
       "", "TrueFalseTrueTrueFalseTrueTrue"},
      {"{{ 'a' is equalto 'a' }}{{ 'a' == 'a' }}{{ 2 is in [1, 2] }}{{ 'b' is in 'abc' }}{{ 2 is "
       "gt 1 }}{{ 2 is le 1 }}{{ 2 is ne 2 }}",
       "", "TrueTrueTrueTrueTrueFalseFalse"},
      {"{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ '1' is lower }}{{ none is sameas none }}{{ "
       "range is callable }}",
       "", "TrueTrueFalseTrueTrue"},
  });
}

// Integer and float arithmetic as in Python.
TEST(JinjaOperatorTest, PythonArithmetic) {
  ExpectRenders({
      {"{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 / 2 }} {{ 6 / 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 7.5 % 2 }} "
       "{{ -7.5 // 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }}",
       "", "3 -4 3.5 3.0 2 -2 1.5 -4.0 1024 0.5 64 4"},
      {"{{ 1 + 1.5 }} {{ true + 1 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 1e-5 }} {{ 0.0001 }} "
       "{{ -0.0 }} {{ 1/3 }} {{ 100.0 }}",
       "",
       "2.5 2 0.30000000000000004 1e+16 1000000000000000.0 1e-05 0.0001 -0.0 0.3333333333333333 "
       "100.0"},
      {"{{ 'a' + 'b' }} {{ [1] + [2] }} {{ (1,) + (2,) }} {{ 'ab' * 3 }} {{ 2 * [0] }} {{ 'x' * -1 "
       "}}|",
       "", "ab [1, 2] (1, 2) ababab [0, 0] |"},
      {"{{ 'a' ~ 1 ~ none ~ true ~ 1.5 ~ [1] }}", "", "a1NoneTrue1.5[1]"},
      {"{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}{{ 'abc' < 'abd' }}{{ [1, 2] < [1, 3] }}{{ 1 == 1.0 }}{{ "
       "(1,) == [1] }}{{ {'a': 1} == {'a': 1.0} }}",
       "", "TrueFalseTrueTrueTrueFalseTrue"},
      {"{{ 1 in [1.0] }}{{ 'k' in {'k': 1} }}{{ 'xy' in 'axyb' }}{{ 'z' not in 'abc' }}{{ not none "
       "}}",
       "", "TrueTrueTrueTrueTrue"},
      {"{{ none or 'x' }}{{ 0 and 1 }}{{ [] or {} }}{{ 'yes' if 1 else 'no' }}{{ 'no else' if "
       "false }}|{{ 1 if 0 else 2 if 0 else 3 }}",
       "", "x0{}yes|3"},
      {"{{ 0b101 }} {{ 0o17 }} {{ 0xFF }} {{ 1_000 }} {{ 1E3 }} {{ 'con' 'cat' }} {{ 'tab\\there' "
       "}} {{ '\\x41\\u00e9\\U0001F600\\101' }} {{ 'a\\qb' }}",
       "", "5 15 255 1000 1000.0 concat tab\there Aé😀A a\\qb"},
  });
}

// Attribute and item access, negative indexes and slices by code point.
TEST(JinjaAccessTest, AttributesItemsAndSlices) {
  ExpectRenders({
      {"{{ d.a }}{{ d['a'] }}{{ d.get('a') }}{{ d.get('zz', 5) }}{{ d.zz }}|{{ d['zz'] }}|{{ d.zz "
       "is defined }}",
       "{\"d\": {\"a\": 1}}", "1115||False"},
      {"{{ l[0] }}{{ l[-1] }}{{ l[10] }}|{{ l.0 }}{{ l[1:] }}{{ l[::-1] }}{{ l[:-1] }}{{ l[::2] }}",
       "{\"l\": [1, 2, 3]}", "13|1[2, 3][3, 2, 1][1, 2][1, 3]"},
      {"{{ 'héllo'[1] }}{{ 'héllo'[1:3] }}{{ 'héllo'[::-1] }}{{ 'abc'[5] }}|", "", "éélolléh|"},
      {"{{ {'k': 'v'}.keys() | list }}{{ {'k': 'v'}.values() | list }}{{ {'k': 'v'}.items() | list "
       "}}",
       "", "['k']['v'][('k', 'v')]"},
      {"{{ none.x }}|{{ none['x'] }}|{{ 'abc'.nope }}|{{ 'a'._private }}|", "", "||||"},
  });
}

// Python str methods, on code points.
TEST(JinjaStringMethodTest, PythonStringMethods) {
  ExpectRenders({
      {"[{{ '  a  '.strip() }}][{{ 'xxaxx'.lstrip('x') }}][{{ 'xxaxx'.rstrip('x') }}][{{ "
       "'\\u3000a\\xa0'.strip() }}]",
       "", "[a][axx][xxa][a]"},
      {"{{ 'a,b,,c'.split(',') }}{{ ' a  b '.split() }}{{ 'a,b,c'.split(',', 1) }}{{ 'a b "
       "c'.rsplit(' ', 1) }}{{ 'a\\r\\nb\\nc'.splitlines() }}",
       "", "['a', 'b', '', 'c']['a', 'b']['a', 'b,c']['a b', 'c']['a', 'b', 'c']"},
      {"{{ 'ab'.startswith('a') }}{{ 'ab'.endswith(('x', 'b')) }}{{ 'hello'.startswith('l', 2) }}",
       "{\"l\": [1, 2, 3]}", "TrueTrueTrue"},
      {"{{ 'hi there'.title() }}{{ 'hELLO'.capitalize() }}{{ 'aBc'.swapcase() }}{{ "
       "'straße'.upper() }}{{ 'ÉCOLE'.lower() }}",
       "", "Hi ThereHelloAbCSTRASSEécole"},
      {"{{ 'aa'.replace('a', 'b') }}{{ 'abc'.replace('', '-') }}{{ ', '.join(['a', 'b']) }}{{ '{} "
       "is {:>4}'.format('x', 1) }}{{ '{a}-{0}'.format(1, a=2) }}",
       "", "bb-a-b-c-a, bx is    12-1"},
      {"{{ 'héllo'.find('l') }}{{ 'hello'.rfind('l') }}{{ 'hello'.find('z') }}{{ "
       "'hello'.count('l') }}{{ 'hello'.index('e') }}",
       "{\"l\": [1, 2, 3]}", "23-121"},
      {"{{ '12'.isdigit() }}{{ 'ab'.isalpha() }}{{ ' '.isspace() }}{{ 'ab'.islower() }}{{ "
       "'AB'.isupper() }}",
       "", "TrueTrueTrueTrueTrue"},
      {"[{{ 'ab'.center(6, '*') }}][{{ 'ab'.ljust(4) }}][{{ 'ab'.rjust(4) }}][{{ '-42'.zfill(5) "
       "}}]{{ 'a=b=c'.partition('=') }}{{ 'a=b=c'.rpartition('=') }}",
       "", "[**ab**][ab  ][  ab][-0042]('a', '=', 'b=c')('a=b', '=', 'c')"},
      {"{{ 'pre_x'.removeprefix('pre_') }}{{ 'x.txt'.removesuffix('.txt') }}{{ '%s and %r' % ('a', "
       "'b') }}{{ '%05.1f|%-3d|%x' % (3.14159, 7, 255) }}",
       "", "xxa and 'b'003.1|7  |ff"},
  });
}

// Values print as Python's str() prints them.
TEST(JinjaPrintTest, PythonRepresentation) {
  ExpectRenders({
      {"{{ none }}|{{ true }}|{{ false }}|{{ 3.0 }}|{{ 2e-7 }}|{{ 123456789012345678.0 }}", "",
       "None|True|False|3.0|2e-07|1.2345678901234568e+17"},
      {"{{ [1, 'a', none, true, 1.5, {'k': [2]}] }}{{ (1,) }}{{ () }}{{ (1, 'a') }}", "",
       "[1, 'a', None, True, 1.5, {'k': [2]}](1,)()(1, 'a')"},
      {"{{ [\"it's\", 'say \"hi\"', 'both \\' \"', 'nl\\n', 'bs\\\\', 'é', '\\x01', '\\xa0'] }}",
       "", "[\"it's\", 'say \"hi\"', 'both \\' \"', 'nl\\n', 'bs\\\\', 'é', '\\x01', '\\xa0']"},
      {"{{ {'a': 'b', 1: none, none: 2} }}{{ [[1.0, -0.0], 1e100] }}{{ 1, 2 }}", "",
       "{'a': 'b', 1: None, None: 2}[[1.0, -0.0], 1e+100](1, 2)"},
      {"{{ messages[0] }}",
       "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", "
       "\"content\": \"yo\"}]}",
       "{'role': 'user', 'content': 'hi'}"},
  });
}

// markupsafe: concatenating a safe string (|safe, |escape) with a plain one escapes the plain one,
// as in Mistral's tool calls.
TEST(JinjaMarkupTest, SafeStringsEscapeWhatTheyMeet) {
  ExpectRenders({
      {"{% set a = {'x': 1} | tojson | safe %}{{ '{\"n\": \"' + 'f' + '\", \"a\": ' + a + '}' }}",
       "", "{&#34;n&#34;: &#34;f&#34;, &#34;a&#34;: {\"x\": 1}}"},
      {"{{ '<b>' | safe }}{{ '<a&\"\\'' | escape }}{{ '<' | e + '<' }}{{ '<' ~ ('<' | e) }}{{ ('<' "
       "| safe) * 2 }}",
       "", "<b>&lt;a&amp;&#34;&#39;&lt;&lt;<&lt;<<"},
      {"{{ ('<b>' | safe).upper() }}{{ ('<b>' | safe).replace('b', '&') }}{{ ['<', '>' | safe] | "
       "join }}{{ ['<' | safe] }}",
       "", "<B><&amp;><>[Markup('<')]"},
      {"{{ '<' | safe is escaped }}{{ '<' is escaped }}{% macro m() %}<>{% endmacro %}{{ m() + '<' "
       "}}",
       "", "TrueFalse<><"},
  });
}

// Undefined prints empty, is falsy, iterates as nothing and has length 0.
TEST(JinjaUndefinedTest, UndefinedIsEmptyAndFalsy) {
  ExpectRenders({
      {"[{{ x }}]{{ x is defined }}{{ x | default('d') }}[{{ x | string }}]{{ x | length }}{{ x | "
       "list }}[{{ x | join(',') }}][{{ x | upper }}][{{ x | trim }}]",
       "{\"d\": {\"a\": 1}}", "[]Falsed[]0[][][][]"},
      {"{% if x %}t{% else %}f{% endif %}{% for i in x %}{{ i }}{% else %}none{% endfor %}{{ not x "
       "}}{{ x == x }}{{ x != 1 }}{{ x or 'alt' }}[{{ x ~ '' }}]",
       "", "fnoneTrueTrueTruealt[]"},
      {"{{ 'a' in x }}{{ x is none }}{{ x is iterable }}[{{ x | first }}][{{ d.missing }}]{{ "
       "d.missing is defined }}",
       "{\"d\": {\"a\": 1}}", "FalseFalseTrue[][]False"},
      {"{% if messages[0]['role'] == 'system' %}sys{% else %}no system{% endif %}{{ "
       "messages[0].tool_calls is defined }}",
       "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", "no systemFalse"},
  });
}

TEST(JinjaErrorTest, SyntaxErrorsNameTheLine) {
  ExpectError("line 1\n{% if x %}\nnever closed",
              {"line 3", "unexpected end of template", "'endif'"});
  ExpectError("{{ 1 + }}", {"line 1", "unexpected end of print statement"});
  ExpectError("a\nb\n{{ (1, 2 }}", {"line 3", "unexpected '}', expected ')'"});
  ExpectError("{{ 'unterminated }}", {"line 1", "unterminated string"});
  ExpectError("{# never closed", {"line 1", "missing end of comment tag"});
  ExpectError("{% raw %} never closed", {"missing end of raw directive"});
  ExpectError("{{ x", {"unexpected end of template"});
  ExpectError("{% set x = %}", {"expected an expression"});
  ExpectError("{% break %}", {"'break' outside loop"});
  ExpectError("{{ f(a=1, 2) }}", {"positional argument follows keyword argument"});
  ExpectError("{% macro m(a=1, b) %}{% endmacro %}", {"non-default argument"});
  ExpectError("{% if true %}a{% else %}b{% else %}c{% endif %}", {"unknown tag 'else'"});
}

TEST(JinjaErrorTest, UnknownAndUnsupportedConstructsAreNamed) {
  ExpectError("x\n{% foo %}", {"line 2", "unknown tag 'foo'"});
  ExpectError("{% endif %}", {"unknown tag 'endif'"});
  ExpectError("\n\n{% extends 'base.html' %}", {"line 3", "unsupported tag 'extends'"});
  ExpectError("{% include 'x' %}", {"unsupported tag 'include'"});
  ExpectError("{% for x in y recursive %}{% endfor %}", {"unsupported recursive loop"});
  ExpectError("{{ x | nosuchfilter }}", {"line 1", "unknown filter 'nosuchfilter'"});
  ExpectError("\n{{ x | groupby('a') }}", {"line 2", "unsupported filter 'groupby'"});
  ExpectError("{{ x is nosuchtest }}", {"unknown test 'nosuchtest'"});
  ExpectError("{{ 'a' '\\N{BULLET}' }}", {"unsupported \\N{...} escape"});
}

TEST(JinjaErrorTest, RaiseExceptionFailsWithItsMessage) {
  ExpectError("{{ raise_exception('Conversation roles must alternate user/assistant') }}",
              {"line 1: Conversation roles must alternate user/assistant"});
  ExpectError("one\ntwo {{ raise_exception('boom: ' ~ 42) }}", {"line 2: boom: 42"});
  // Inside a macro the line is the raise_exception call's, not the macro call's.
  ExpectError("{% macro m() %}\n{{ raise_exception('in macro') }}{% endmacro %}\n\n{{ m() }}",
              {"line 2: in macro"});
}

TEST(JinjaErrorTest, RuntimeErrorsAreWordedAsPythonWordsThem) {
  ExpectError("{{ foo.bar }}", {"line 1", "'foo' is undefined"});
  ExpectError("{{ d.x.y }}", {"'dict object' has no attribute 'x'"}, R"({"d": {}})");
  ExpectError("{{ foo + 1 }}", {"'foo' is undefined"});
  ExpectError("{{ foo() }}", {"'foo' is undefined"});
  ExpectError("{{ 'a' + 1 }}", {"can only concatenate str (not \"int\") to str"});
  ExpectError("{{ m.content + 'x' }}", {"unsupported operand type(s) for +: 'NoneType' and 'str'"},
              R"({"m": {"content": null}})");
  ExpectError("{{ 1 / 0 }}", {"division by zero"});
  ExpectError("{{ 'a' < 1 }}", {"'<' not supported between instances of 'str' and 'int'"});
  ExpectError("{{ 1 in 'abc' }}", {"'in <string>' requires string as left operand, not int"});
  ExpectError("{% for x in none %}{% endfor %}", {"'NoneType' object is not iterable"});
  ExpectError("{% for a, b in [[1, 2, 3]] %}{% endfor %}", {"too many values to unpack"});
  ExpectError("{{ x | tojson }}", {"Object of type Undefined is not JSON serializable"});
  ExpectError("{{ [1] | select | length }}", {"object of type 'generator' has no len()"});
  ExpectError("{{ n[1:] }}", {"'NoneType' object is not subscriptable"}, R"({"n": null})");
  ExpectError("{{ 'x'() }}", {"'str' object is not callable"});
  ExpectError("{% set x = 5 %}{% set x.y = 1 %}", {"non-namespace object"});
  ExpectError("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}",
              {"macro 'm' takes not more than 1 argument(s)"});
  ExpectError("{% macro m(a) %}{% endmacro %}{{ m(b=1) }}",
              {"macro 'm' takes no keyword argument 'b'"});
}

TEST(JinjaErrorTest, TheSandboxRefusesMutationAndPrivateAttributes) {
  ExpectError("{% set x = [1] %}{{ x.append(2) }}",
              {"access to attribute 'append' of 'list' object is unsafe."});
  ExpectError("{{ {'a': 1}.update({'b': 2}) }}",
              {"access to attribute 'update' of 'dict' object is unsafe."});
  ExpectError("{{ 'a'.__class__() }}",
              {"access to attribute '__class__' of 'str' object is unsafe."});
  ExpectError("{{ range(100001) | length }}", {"Range too big"});
}

TEST(JinjaErrorTest, LimitsInsteadOfCrashes) {
  ExpectError("{% macro r(n) %}{{ r(n) }}{% endmacro %}{{ r(1) }}", {"maximum recursion depth"});
  ExpectError("{{ 9223372036854775807 + 1 }}", {"integer overflow"});
  ExpectError("{{ 'x' * 1000000000 }}", {"too large"});
}

TEST(JinjaTemplateTest, ContextMustBeAnObject) {
  StatusOr<std::unique_ptr<Template>> parsed = Template::Parse("{{ x }}");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const StatusOr<std::string> rendered = (*parsed)->Render(nlohmann::json::array());
  ASSERT_FALSE(rendered.ok());
  EXPECT_EQ(rendered.status().code(), StatusCode::kInvalidArgument);
}

// nlohmann::json keeps object keys sorted; RenderOrdered keeps the request's order as Python does.
TEST(JinjaTemplateTest, RenderOrderedKeepsKeyOrder) {
  StatusOr<std::unique_ptr<Template>> parsed =
      Template::Parse("{{ args | tojson }}{% for k in args %} {{ k }}{% endfor %}");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const std::string context = R"({"args": {"zeta": 1, "alpha": 2}})";
  const StatusOr<std::string> ordered =
      (*parsed)->RenderOrdered(nlohmann::ordered_json::parse(context));
  const StatusOr<std::string> sorted = (*parsed)->Render(nlohmann::json::parse(context));
  ASSERT_TRUE(ordered.ok()) << ordered.status();
  ASSERT_TRUE(sorted.ok()) << sorted.status();
  EXPECT_EQ(*ordered, R"({"zeta": 1, "alpha": 2} zeta alpha)");
  EXPECT_EQ(*sorted, R"({"alpha": 2, "zeta": 1} alpha zeta)");
}

TEST(JinjaTemplateTest, StrftimeNowFormatsTheCurrentDate) {
  const StatusOr<std::string> year = RenderSource("{{ strftime_now('%Y') | length }}", "");
  ASSERT_TRUE(year.ok()) << year.status();
  EXPECT_EQ(*year, "4");
}

TEST(JinjaTemplateTest, ConcurrentRendersShareOneTemplate) {
  StatusOr<std::unique_ptr<Template>> parsed = Template::Parse(
      "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
      "{{ m.content }}{% endfor %}{{ ns.n }}");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Template& tmpl = **parsed;
  std::vector<std::thread> threads;
  threads.reserve(8);
  std::vector<std::string> results(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&tmpl, &results, t] {
      nlohmann::json context;
      for (int i = 0; i < 100; ++i) context["messages"].push_back({{"content", std::to_string(t)}});
      StatusOr<std::string> rendered = tmpl.Render(context);
      results[t] = rendered.ok() ? *rendered : rendered.status().ToString();
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < 8; ++t) {
    std::string expected;
    for (int i = 0; i < 100; ++i) expected += std::to_string(t);
    EXPECT_EQ(results[t], expected + "100");
  }
}

}  // namespace
}  // namespace tandem::jinja
