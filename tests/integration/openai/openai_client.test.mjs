// The official OpenAI Node.js client against a running `tandem serve` (issue 4).
//
// Environment (set by tests/integration/serve_test.sh):
//   TANDEM_BASE_URL   http://127.0.0.1:PORT/v1
//   TANDEM_MODEL      the served model name
//   TANDEM_API_KEY    the server's API key, if it has one
//   TANDEM_BIN        build/bin/tandem, for the `tandem run` reference outputs
//   TANDEM_MODEL_DIR  the model directory serve runs
//   TANDEM_WEIGHTS    checkpoint | random (as serve runs its workers)
//   TANDEM_SEED       the seed of the random weights
//
// Run: node --test tests/integration/openai/
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, test } from 'node:test';

import OpenAI from 'openai';

const env = process.env;
for (const name of ['TANDEM_BASE_URL', 'TANDEM_MODEL', 'TANDEM_BIN', 'TANDEM_MODEL_DIR']) {
  if (!env[name]) throw new Error(`${name} is not set (run through serve_test.sh)`);
}
const model = env.TANDEM_MODEL;
const client = new OpenAI({
  baseURL: env.TANDEM_BASE_URL,
  apiKey: env.TANDEM_API_KEY || 'unused',
  maxRetries: 0,
  timeout: 60_000,
});

const MAX_TOKENS = 24;
const CHAT_PROMPT = 'Hello! Please tell me a story about a cat.';
const COMPLETION_PROMPT = 'The quick brown fox';

// What `tandem run` generates greedily for the same prompt on the same (seeded) weights.
function tandemRun(extraArgs) {
  const args = ['run', '--model', env.TANDEM_MODEL_DIR, '--weights', env.TANDEM_WEIGHTS || 'random',
                '--seed', env.TANDEM_SEED || '0', '--temperature', '0',
                '--max-tokens', String(MAX_TOKENS), '--json', ...extraArgs];
  return JSON.parse(execFileSync(env.TANDEM_BIN, args, { encoding: 'utf8' }));
}

async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

describe('models', () => {
  test('lists the served model', async () => {
    const models = [];
    for await (const m of client.models.list()) models.push(m.id);
    assert.ok(models.includes(model), `models: ${JSON.stringify(models)}`);
  });

  // Issue 14 item 9: the client's models.retrieve (GET /v1/models/{id}).
  test('retrieves the served model, and not another', async () => {
    const card = await client.models.retrieve(model);
    assert.equal(card.id, model);
    assert.equal(card.object, 'model');
    await assert.rejects(client.models.retrieve('no-such-model'), OpenAI.NotFoundError);
  });
});

describe('unsupported parameters', () => {
  // Issue 14 item 6: refused with a 400 naming the field, not silently ignored.
  for (const [param, extra] of [
    ['response_format', { response_format: { type: 'json_object' } }],
    ['logit_bias', { logit_bias: { 1: 10 } }],
  ]) {
    test(`${param} is a 400 naming it`, async () => {
      const err = await client.chat.completions
        .create({ model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, ...extra })
        .then(() => null, (e) => e);
      assert.ok(err instanceof OpenAI.BadRequestError, String(err));
      assert.equal(err.param, param);
    });
  }
  test('content parts of text are joined, not sent as JSON', async () => {
    const parts = await client.chat.completions.create({
      model, max_tokens: 8, temperature: 0,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Hello' }, { type: 'text', text: 'there' }] }],
    });
    const joined = await client.chat.completions.create({
      model, max_tokens: 8, temperature: 0, messages: [{ role: 'user', content: 'Hello\nthere' }],
    });
    assert.equal(parts.choices[0].message.content, joined.choices[0].message.content);
  });
});

describe('chat.completions', () => {
  const expected = tandemRun(['--chat', '--prompt', CHAT_PROMPT]);
  const request = {
    model,
    messages: [{ role: 'user', content: CHAT_PROMPT }],
    max_tokens: MAX_TOKENS,
    temperature: 0,
  };

  test('greedy output equals tandem run', async () => {
    const completion = await client.chat.completions.create(request);
    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.choices.length, 1);
    const choice = completion.choices[0];
    assert.equal(choice.message.role, 'assistant');
    assert.equal(choice.message.content, expected.output_text);
    assert.equal(choice.finish_reason, expected.finish_reason === 'length' ? 'length' : 'stop');
    assert.equal(completion.usage.prompt_tokens, expected.prompt_tokens);
    assert.equal(completion.usage.completion_tokens, expected.output_tokens.length);
    assert.equal(completion.usage.total_tokens,
                 expected.prompt_tokens + expected.output_tokens.length);
  });

  test('streaming concatenates to the non-streaming answer, with usage', async () => {
    const chunks = await collect(await client.chat.completions.create({
      ...request, stream: true, stream_options: { include_usage: true },
    }));
    assert.ok(chunks.length >= 2, `only ${chunks.length} chunks`);
    let text = '';
    let finish = null;
    for (const chunk of chunks) {
      assert.equal(chunk.object, 'chat.completion.chunk');
      for (const choice of chunk.choices) {
        text += choice.delta.content ?? '';
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
    assert.equal(text, expected.output_text);
    assert.equal(finish, expected.finish_reason === 'length' ? 'length' : 'stop');
    // include_usage: a last chunk with no choices carries the usage.
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.prompt_tokens, expected.prompt_tokens);
    assert.equal(last.usage.completion_tokens, expected.output_tokens.length);
  });

  test('the SDK stream helper yields the same text', async () => {
    const runner = client.chat.completions.stream(request);
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0].message.content, expected.output_text);
  });
});

describe('completions', () => {
  const expected = tandemRun(['--prompt', COMPLETION_PROMPT]);
  const request = { model, prompt: COMPLETION_PROMPT, max_tokens: MAX_TOKENS, temperature: 0 };

  test('greedy output equals tandem run', async () => {
    const completion = await client.completions.create(request);
    assert.equal(completion.object, 'text_completion');
    assert.equal(completion.choices.length, 1);
    assert.equal(completion.choices[0].text, expected.output_text);
    assert.equal(completion.usage.prompt_tokens, expected.prompt_tokens);
    assert.equal(completion.usage.completion_tokens, expected.output_tokens.length);
  });

  test('streaming concatenates to the non-streaming answer, with usage', async () => {
    const chunks = await collect(await client.completions.create({
      ...request, stream: true, stream_options: { include_usage: true },
    }));
    let text = '';
    for (const chunk of chunks) {
      for (const choice of chunk.choices) text += choice.text ?? '';
    }
    assert.equal(text, expected.output_text);
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.completion_tokens, expected.output_tokens.length);
  });

  test('a prompt of token ids', async () => {
    // The ids tandem run encodes (bos included), sent as they are.
    const { ids: tokens } = JSON.parse(execFileSync(
      env.TANDEM_BIN, ['tokenize', '--tokenizer', env.TANDEM_MODEL_DIR, '--add-special-tokens',
                       '--json'], { encoding: 'utf8', input: COMPLETION_PROMPT }));
    assert.equal(tokens.length, expected.prompt_tokens);
    const completion = await client.completions.create({ ...request, prompt: tokens });
    assert.equal(completion.choices[0].text, expected.output_text);
    assert.equal(completion.usage.prompt_tokens, tokens.length);
  });
});

describe('errors', () => {
  test('n > 1 is a BadRequestError (400)', async () => {
    await assert.rejects(
      client.chat.completions.create({
        model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, n: 2,
      }),
      (err) => err instanceof OpenAI.BadRequestError && err.status === 400);
  });

  test('an unknown model is a NotFoundError (404)', async () => {
    await assert.rejects(
      client.chat.completions.create({
        model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4,
      }),
      (err) => err instanceof OpenAI.NotFoundError && err.status === 404);
  });

  test('the server answers after the errors', async () => {
    const completion = await client.completions.create({
      model, prompt: 'Hello', max_tokens: 4, temperature: 0,
    });
    assert.equal(completion.choices.length, 1);
    assert.ok(completion.usage.completion_tokens >= 1);
  });
});
