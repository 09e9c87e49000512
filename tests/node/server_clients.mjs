// server_clients.mjs — end-to-end checks of `glmlite serve` with the real npm
// `openai` and `ollama` clients (called from tests/test_server.c).
//
// usage: node server_clients.mjs BASE_URL SCRIPTED_URL API_KEY MODEL
//   BASE_URL      a server sampling from the model (--parallel 2)
//   SCRIPTED_URL  a server started with --script (reasoning + a tool call) and --api-key API_KEY
// Prints one line per failed check and exits 1 if any failed.
import OpenAI from 'openai';
import { Ollama } from 'ollama';
import assert from 'node:assert/strict';

const [base, scripted, apiKey, model] = process.argv.slice(2);
let failures = 0;
async function check(name, fn) {
  try {
    await fn();
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e}`);
  }
}

const oa = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 20000 });
const ol = new Ollama({ host: base });
const oaS = new OpenAI({ baseURL: `${scripted}/v1`, apiKey, maxRetries: 0, timeout: 20000 });
const olS = new Ollama({ host: scripted, headers: { Authorization: `Bearer ${apiKey}` } });

const hi = [{ role: 'user', content: 'Hello, who are you?' }];
const greedy = { temperature: 0, seed: 7 };

async function oaStream(client, params) {
  const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  let content = '', reasoning = '', finish = null, usage = null, calls = [];
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices) {
      if (ch.delta.content) content += ch.delta.content;
      if (ch.delta.reasoning_content) reasoning += ch.delta.reasoning_content;
      for (const tc of ch.delta.tool_calls ?? []) {
        calls[tc.index] ??= { id: '', name: '', arguments: '' };
        if (tc.id) calls[tc.index].id = tc.id;
        if (tc.function?.name) calls[tc.index].name += tc.function.name;
        if (tc.function?.arguments) calls[tc.index].arguments += tc.function.arguments;
      }
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  return { content, reasoning, finish, usage, calls };
}

// ---- OpenAI client, sampling server
let plain;
await check('openai models.list', async () => {
  const list = await oa.models.list();
  assert.deepEqual(list.data.map((m) => m.id), [model]);
  assert.equal((await oa.models.retrieve(model)).id, model);
});
await check('openai chat non-stream', async () => {
  plain = await oa.chat.completions.create({ model, messages: hi, max_tokens: 12, ...greedy });
  const c = plain.choices[0];
  assert.equal(c.message.role, 'assistant');
  assert.ok(['stop', 'length'].includes(c.finish_reason));
  assert.ok(plain.usage.prompt_tokens > 5);
  assert.ok(plain.usage.completion_tokens >= 1 && plain.usage.completion_tokens <= 12);
  assert.equal(plain.usage.total_tokens, plain.usage.prompt_tokens + plain.usage.completion_tokens);
  assert.equal(typeof plain.usage.prompt_tokens_details.cached_tokens, 'number');
  assert.ok((c.message.reasoning_content ?? '').length > 0, 'thinking is on by default: reasoning expected');
});
await check('openai chat stream equals non-stream', async () => {
  const s = await oaStream(oa, { model, messages: hi, max_tokens: 12, ...greedy });
  assert.equal(s.content, plain.choices[0].message.content ?? '');
  assert.equal(s.reasoning, plain.choices[0].message.reasoning_content ?? '');
  assert.equal(s.finish, plain.choices[0].finish_reason);
  assert.equal(s.usage.completion_tokens, plain.usage.completion_tokens);
  assert.equal(s.usage.prompt_tokens, plain.usage.prompt_tokens);
});
await check('openai thinking off', async () => {
  const a = await oa.chat.completions.create({ model, messages: hi, max_tokens: 8, ...greedy, chat_template_kwargs: { enable_thinking: false } });
  const b = await oa.chat.completions.create({ model, messages: hi, max_tokens: 8, ...greedy, reasoning_effort: 'none' });
  for (const r of [a, b]) assert.equal(r.choices[0].message.reasoning_content, undefined);
  assert.equal(a.usage.prompt_tokens, plain.usage.prompt_tokens); // "<think>" vs "</think>": one token either way
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
});
await check('openai completions', async () => {
  const r = await oa.completions.create({ model, prompt: 'Once upon a time', max_tokens: 6, ...greedy });
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0].text, 'string');
  assert.ok(r.usage.completion_tokens >= 1);
  const s = await oa.completions.create({ model, prompt: 'Once upon a time', max_tokens: 6, ...greedy, stream: true });
  let text = '';
  for await (const ch of s) text += ch.choices[0]?.text ?? '';
  assert.equal(text, r.choices[0].text);
});
await check('openai stop string', async () => {
  const full = plain.choices[0].message;
  const all = (full.reasoning_content ?? '') + (full.content ?? '');
  if (all.length < 4) return;
  const stop = all.slice(2, 4);
  const r = await oa.chat.completions.create({ model, messages: hi, max_tokens: 12, ...greedy, stop: [stop] });
  const got = (r.choices[0].message.reasoning_content ?? '') + (r.choices[0].message.content ?? '');
  assert.equal(got, all.slice(0, all.indexOf(stop)));
  assert.equal(r.choices[0].finish_reason, 'stop');
});
await check('openai Responses API: a 404 that says what to use', async () => {
  await assert.rejects(oa.responses.create({ model, input: 'hi' }), (e) => {
    assert.equal(e.status, 404);
    assert.match(e.message, /\/v1\/chat\/completions/);
    return true;
  });
});
await check('openai 400 names the field', async () => {
  await assert.rejects(oa.chat.completions.create({ model, messages: hi, temperature: 'hot' }), (e) => {
    assert.equal(e.status, 400);
    assert.match(e.message, /temperature/);
    return true;
  });
  await assert.rejects(oa.chat.completions.create({ model, messages: [{ role: 'wizard', content: 'x' }] }), (e) => e.status === 400 && /role/.test(e.message));
});

// prompt cache: the follow-up turn prefills only what is new
const story = 'The quick brown fox jumps over the lazy dog near the river bank. '.repeat(20);
await check('openai prompt cache across turns', async () => {
  const msgs = [{ role: 'user', content: story + 'Summarise.' }];
  const t1 = await oa.chat.completions.create({ model, messages: msgs, max_tokens: 6, ...greedy });
  msgs.push({ role: 'assistant', content: t1.choices[0].message.content ?? '' });
  msgs.push({ role: 'user', content: 'Thanks!' });
  const t2 = await oa.chat.completions.create({ model, messages: msgs, max_tokens: 6, ...greedy });
  const cached = t2.usage.prompt_tokens_details.cached_tokens;
  assert.ok(t1.usage.prompt_tokens > 150, `first prompt ${t1.usage.prompt_tokens}`);
  assert.ok(cached >= t1.usage.prompt_tokens - 1, `cached ${cached} of first prompt ${t1.usage.prompt_tokens}`);
  assert.ok(t2.usage.prompt_tokens - cached < 40, `prefilled ${t2.usage.prompt_tokens - cached}`);
});

// two conversations taking turns keep their caches in the two slots (--parallel 2): the template's
// first tokens, which every prompt shares, do not send B into A's slot
await check('alternating conversations keep their slots', async () => {
  const a = [{ role: 'user', content: 'Alpha: ' + story + 'Go on.' }];
  const b = [{ role: 'user', content: 'Beta: a different question about lakes, mountains and rain. '.repeat(8) }];
  for (const m of [a, b]) {
    const r = await oa.chat.completions.create({ model, messages: m, max_tokens: 4, ...greedy });
    m.push({ role: 'assistant', content: r.choices[0].message.content ?? '' }, { role: 'user', content: 'More.' });
  }
  for (const m of [a, b]) {
    const r = await oa.chat.completions.create({ model, messages: m, max_tokens: 4, ...greedy });
    assert.ok(r.usage.prompt_tokens - r.usage.prompt_tokens_details.cached_tokens < 40,
      `prefilled ${r.usage.prompt_tokens - r.usage.prompt_tokens_details.cached_tokens} of ${r.usage.prompt_tokens}`);
  }
});

// ---- Ollama client, sampling server
let olPlain;
await check('ollama list/ps/show/version', async () => {
  const tags = await ol.list();
  assert.equal(tags.models[0].name, model);
  const ps = await ol.ps();
  assert.equal(ps.models[0].name, model);
  const show = await ol.show({ model });
  for (const c of ['completion', 'tools', 'thinking']) assert.ok(show.capabilities.includes(c));
  const v = await ol.version();
  assert.match(v.version, /^\d+\.\d+\.\d+$/);
});
await check('ollama chat non-stream', async () => {
  olPlain = await ol.chat({ model, messages: hi, options: { num_predict: 12, ...greedy } });
  assert.equal(olPlain.done, true);
  assert.ok(['stop', 'length'].includes(olPlain.done_reason));
  for (const k of ['total_duration', 'load_duration', 'prompt_eval_count', 'prompt_eval_duration', 'eval_count', 'eval_duration'])
    assert.equal(typeof olPlain[k], 'number', k);
  assert.ok(olPlain.eval_count >= 1 && olPlain.eval_count <= 12);
  // same request, same tokens as the OpenAI route
  assert.equal(olPlain.message.content, plain.choices[0].message.content ?? '');
  assert.equal(olPlain.message.thinking ?? '', plain.choices[0].message.reasoning_content ?? '');
});
await check('ollama chat stream', async () => {
  let content = '', thinking = '', last;
  for await (const part of await ol.chat({ model, messages: hi, stream: true, options: { num_predict: 12, ...greedy } })) {
    content += part.message.content;
    thinking += part.message.thinking ?? '';
    last = part;
  }
  assert.equal(content, olPlain.message.content);
  assert.equal(thinking, olPlain.message.thinking ?? '');
  assert.equal(last.done, true);
  assert.equal(last.eval_count, olPlain.eval_count);
});
await check('ollama think false', async () => {
  const r = await ol.chat({ model, messages: hi, think: false, options: { num_predict: 8, ...greedy } });
  assert.equal(r.message.thinking, undefined);
});
await check('ollama generate', async () => {
  const r = await ol.generate({ model, prompt: 'Why is the sky blue?', system: 'Be brief.', options: { num_predict: 8, ...greedy } });
  assert.equal(r.done, true);
  assert.ok(r.eval_count >= 1);
  let text = '', thinking = '';
  for await (const p of await ol.generate({ model, prompt: 'Why is the sky blue?', system: 'Be brief.', stream: true, options: { num_predict: 8, ...greedy } })) {
    text += p.response;
    thinking += p.thinking ?? '';
  }
  assert.equal(text, r.response);
  assert.equal(thinking, r.thinking ?? '');
  const raw = await ol.generate({ model, prompt: '[gMASK]<sop><|user|>hi<|assistant|></think>', raw: true, options: { num_predict: 4, ...greedy } });
  assert.equal(raw.thinking, undefined);
});
await check('ollama prompt cache across turns', async () => {
  const msgs = [{ role: 'user', content: 'Tell me something. ' + story }];
  const t1 = await ol.chat({ model, messages: msgs, options: { num_predict: 6, ...greedy } });
  msgs.push(t1.message, { role: 'user', content: 'More please.' });
  const t2 = await ol.chat({ model, messages: msgs, options: { num_predict: 6, ...greedy } });
  assert.ok(t1.prompt_eval_count > 150, `first ${t1.prompt_eval_count}`);
  // as Ollama: prompt_eval_count is the whole prompt (clients report it as input tokens),
  // prompt_eval_cached_count the part taken from the cache
  assert.ok(t2.prompt_eval_count > t1.prompt_eval_count, `follow-up prompt_eval_count ${t2.prompt_eval_count}`);
  assert.ok(t2.prompt_eval_count - t2.prompt_eval_cached_count < 40,
    `follow-up evaluated ${t2.prompt_eval_count - t2.prompt_eval_cached_count} prompt tokens`);
});

// ---- concurrency: 8 clients at once, each identical to the same request alone
await check('8 concurrent clients', async () => {
  const req = (i) => ({ model, messages: [{ role: 'user', content: `Question number ${i}: what is ${i} + ${i}?` }], max_tokens: 10, ...greedy });
  const alone = [];
  for (let i = 0; i < 8; i++) alone.push(await oa.chat.completions.create(req(i)));
  const together = await Promise.all([...Array(8).keys()].map((i) =>
    i % 2 ? oaStream(oa, req(i)) : oa.chat.completions.create(req(i))));
  for (let i = 0; i < 8; i++) {
    const a = alone[i].choices[0].message, t = together[i];
    const tc = t.choices ? t.choices[0].message.content ?? '' : t.content;
    const tr = t.choices ? t.choices[0].message.reasoning_content ?? '' : t.reasoning;
    assert.equal(tc, a.content ?? '', `client ${i} content`);
    assert.equal(tr, a.reasoning_content ?? '', `client ${i} reasoning`);
  }
  const distinct = new Set(alone.map((r) => r.choices[0].message.reasoning_content + '|' + r.choices[0].message.content));
  assert.ok(distinct.size > 1, 'different prompts should give different answers');
});

// ---- scripted server: real tool calls, reasoning and content through the real path
const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
const ask = [{ role: 'user', content: 'What is the weather in Paris?' }];
// usage counts the reasoning's tokens (up to and including </think>) among the completion's
await check('openai usage reasoning_tokens (scripted)', async () => {
  const r = await oaS.chat.completions.create({ model, messages: ask, tools });
  const n = r.usage.completion_tokens_details?.reasoning_tokens;
  assert.ok(n > 1 && n < r.usage.completion_tokens, `reasoning_tokens ${n} of ${r.usage.completion_tokens}`);
  const off = await oa.chat.completions.create({ model, messages: hi, max_tokens: 3, ...greedy,
    chat_template_kwargs: { enable_thinking: false } });
  assert.equal(off.usage.completion_tokens_details.reasoning_tokens, 0);
});
await check('openai tool call (scripted)', async () => {
  const r = await oaS.chat.completions.create({ model, messages: ask, tools });
  const m = r.choices[0].message;
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.equal(m.reasoning_content, 'The user wants weather.');
  assert.equal(m.content, 'Sure.');
  assert.equal(m.tool_calls.length, 1);
  assert.equal(m.tool_calls[0].type, 'function');
  assert.equal(m.tool_calls[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(m.tool_calls[0].function.arguments), { city: 'Paris' });
  const s = await oaStream(oaS, { model, messages: ask, tools });
  assert.equal(s.finish, 'tool_calls');
  assert.equal(s.reasoning, 'The user wants weather.');
  assert.equal(s.content, 'Sure.');
  assert.equal(s.calls.length, 1);
  assert.equal(s.calls[0].name, 'get_weather');
  assert.ok(s.calls[0].id.length > 0);
  assert.deepEqual(JSON.parse(s.calls[0].arguments), { city: 'Paris' });
  // the tool result goes back: the conversation renders and answers again
  const msgs = [...ask, m, { role: 'tool', tool_call_id: m.tool_calls[0].id, content: '{"temp": 21}' }];
  const r2 = await oaS.chat.completions.create({ model, messages: msgs, tools });
  assert.ok(r2.usage.prompt_tokens_details.cached_tokens > 0);
});
await check('ollama tool call (scripted)', async () => {
  const r = await olS.chat({ model, messages: ask, tools });
  assert.equal(r.message.thinking, 'The user wants weather.');
  assert.equal(r.message.content, 'Sure.');
  assert.equal(r.message.tool_calls[0].function.name, 'get_weather');
  assert.deepEqual(r.message.tool_calls[0].function.arguments, { city: 'Paris' });
  const calls = [];
  let thinking = '';
  for await (const p of await olS.chat({ model, messages: ask, tools, stream: true })) {
    thinking += p.message.thinking ?? '';
    calls.push(...(p.message.tool_calls ?? []));
  }
  assert.equal(thinking, 'The user wants weather.');
  assert.deepEqual(calls.map((c) => [c.function.name, c.function.arguments]), [['get_weather', { city: 'Paris' }]]);
});
await check('no tool calls when none are offered (scripted)', async () => {
  for (const extra of [{}, { tools, tool_choice: 'none' }]) {
    const r = await oaS.chat.completions.create({ model, messages: ask, ...extra });
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.choices[0].message.tool_calls, undefined);
    assert.match(r.choices[0].message.content, /<tool_call>get_weather.*<\/tool_call>$/);
  }
  const o = await olS.chat({ model, messages: ask });
  assert.equal(o.message.tool_calls, undefined);
  const g = await olS.generate({ model, prompt: 'hi' });
  assert.match(g.response, /^Sure\.<tool_call>get_weather<arg_key>city<\/arg_key><arg_value>Paris<\/arg_value><\/tool_call>$/);
});
// tool_choice "required" or a named function: the answer opens with the call (the sampling
// server's random model would not write one by itself); its arguments are the model's own
await check('tool_choice forces the call', async () => {
  const off = { chat_template_kwargs: { enable_thinking: false }, max_tokens: 6, ...greedy };
  for (const [choice, start] of [[{ type: 'function', function: { name: 'get_weather' } }, '<tool_call>get_weather'],
    ['required', '<tool_call>']]) {
    const r = await oa.chat.completions.create({ model, messages: ask, tools, tool_choice: choice, ...off });
    const m = r.choices[0].message;
    const call = m.tool_calls?.[0]?.function.name;
    assert.ok(call === 'get_weather' || (m.content ?? '').startsWith(start), `${JSON.stringify(choice)}: ${JSON.stringify(m)}`);
  }
  const auto = await oa.chat.completions.create({ model, messages: ask, tools, ...off });
  assert.ok(!(auto.choices[0].message.content ?? '').startsWith('<tool_call>'), 'the random model called a tool by itself');
});
await check('api key required', async () => {
  const noKey = new OpenAI({ baseURL: `${scripted}/v1`, apiKey: 'wrong', maxRetries: 0 });
  await assert.rejects(noKey.models.list(), (e) => e.status === 401);
  const olNoKey = new Ollama({ host: scripted });
  await assert.rejects(olNoKey.list(), (e) => e.status_code === 401);
});

if (failures) {
  console.log(`${failures} check(s) failed`);
  process.exit(1);
}
console.log('all client checks passed');
