// render_chat.mjs — oracle for src/chat_render.c: renders chat requests with
// @huggingface/jinja and the official GLM-4.7-Flash chat_template.jinja.
//
// usage: node render_chat.mjs TEMPLATE IN.json OUT.json
//   IN.json:  [{"request": "<JSON text of {messages, tools, add_generation_prompt,
//              enable_thinking, clear_thinking}>", "oracle_request": optional}, ...]
//   OUT.json: [{"ok": true, "text": "..."} | {"ok": false, "error": "..."}, ...]
//
// @huggingface/jinja 0.5.11 departs from jinja2 (what transformers runs) in
// ways this template exercises; we patch them so the oracle has Python
// semantics:
//   - str.strip/lstrip/rstrip ignore their argument and use JS whitespace
//     (String.prototype.trim). The template calls rstrip('\n') / lstrip('\n'):
//     with JS semantics "<think> </think>" yields no reasoning, in Python a
//     reasoning of " " (rendered "<think></think>"). We replace them with
//     Python's: an optional set of characters, else str.isspace() (which
//     includes \x1c-\x1f and \x85 but not \ufeff, unlike JS).
//   - tojson already uses Python's default separators ", " / ": " and keeps
//     non-ASCII raw; no patch needed.
// Not patched (the generator marks such conversations node:false): JS has one
// number type, so 1.0 / 1e5 / big ints / exponent forms print differently;
// null prints "" rather than "None"; dicts print as JSON rather than Python
// repr; an absent tool content is not iterable; integer-like object keys are
// reordered by JS objects.
import { readFileSync, writeFileSync } from "node:fs";
import { Template, Environment } from "@huggingface/jinja";

const PY_SPACE = "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000";

function pyStrip(s, chars, left, right) {
  const set = chars === undefined || chars === null ? PY_SPACE : chars;
  const cps = Array.from(s); // code points, as Python indexes them
  let a = 0, b = cps.length;
  if (left) while (a < b && set.includes(cps[a])) a++;
  if (right) while (b > a && set.includes(cps[b - 1])) b--;
  return cps.slice(a, b).join("");
}

(function patchStringBuiltins() {
  const env = new Environment();
  env.set("probe", "x");
  const probe = env.lookupVariable("probe");
  const StringValue = probe.constructor;
  const FunctionValue = probe.builtins.get("strip").constructor;
  const desc = Object.getOwnPropertyDescriptor(StringValue.prototype, "builtins");
  Object.defineProperty(StringValue.prototype, "builtins", {
    configurable: true,
    get() {
      const m = desc.get.call(this);
      if (!m.__pyPatched) {
        const self = this;
        const mk = (left, right) =>
          new FunctionValue((args) => {
            const c = args[0];
            const chars = c && c.type === "StringValue" ? c.value : null;
            return new StringValue(pyStrip(self.value, chars, left, right));
          });
        m.set("strip", mk(true, true));
        m.set("lstrip", mk(true, false));
        m.set("rstrip", mk(false, true));
        m.__pyPatched = true;
      }
      return m;
    },
  });
})();

const [templatePath, inPath, outPath] = process.argv.slice(2);
const template = new Template(readFileSync(templatePath, "utf8"));
const cases = JSON.parse(readFileSync(inPath, "utf8"));
const out = cases.map((c) => {
  try {
    const req = JSON.parse(c.oracle_request ?? c.request);
    // transformers passes tools (None when absent) and add_generation_prompt
    // always, other kwargs only when given.
    const vars = { messages: req.messages, tools: req.tools ?? null, add_generation_prompt: req.add_generation_prompt ?? false };
    for (const k of ["enable_thinking", "clear_thinking"]) if (k in req && req[k] !== null) vars[k] = req[k];
    return { ok: true, text: template.render(vars) };
  } catch (e) {
    return { ok: false, error: String(e && e.message ? e.message : e) };
  }
});
writeFileSync(outPath, JSON.stringify(out));
