// Validates KEDA objects against KEDA's own CRD schema (the compiled validators of @kubernetes-models/keda).
// Input: a JSON array of rendered objects on stdin. Output: one line per KEDA object, `ok KIND NAME` or its
// errors; exit 1 on any error. The schema has no additionalProperties, so a field the validator never reads
// (a typo, a field this KEDA does not know) is reported as unknown: a Proxy records what it reads.
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1";

function tracked(value, path, fields) {
  if (Array.isArray(value)) {
    return value.map((item, i) => tracked(item, `${path}/${i}`, fields));
  }
  if (value === null || typeof value !== "object") {
    return value;
  }
  const read = new Set();
  fields.push({ path, keys: Object.keys(value), read });
  const inner = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, tracked(v, `${path}/${k}`, fields)]));
  return new Proxy(inner, {
    get(target, key, receiver) {
      if (typeof key === "string") read.add(key);
      return Reflect.get(target, key, receiver);
    },
    has(target, key) {
      if (typeof key === "string") read.add(key);
      return Reflect.has(target, key);
    },
    // Iterating keys (maps such as labels or trigger metadata) reads every one of them.
    ownKeys(target) {
      Object.keys(target).forEach((k) => read.add(k));
      return Reflect.ownKeys(target);
    },
  });
}

const input = await new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (chunk) => (text += chunk));
  process.stdin.on("end", () => resolve(text));
});
let failed = false;
for (const object of JSON.parse(input)) {
  if (!String(object.apiVersion).startsWith("keda.sh/")) continue;
  const model = keda[object.kind];
  const name = `${object.kind} ${object.metadata?.name}`;
  if (!model || object.apiVersion !== model.apiVersion) {
    console.log(`error ${name}: no KEDA schema for ${object.apiVersion} ${object.kind}`);
    failed = true;
    continue;
  }
  const fields = [];
  const errors = [];
  try {
    model.prototype.validate.call(tracked(object, "", fields));
  } catch (e) {
    errors.push(e.message);
  }
  for (const { path, keys, read } of fields) {
    for (const key of keys.filter((k) => !read.has(k))) errors.push(`unknown field ${path}/${key}`);
  }
  console.log(errors.length === 0 ? `ok ${name}` : `error ${name}: ${errors.join("; ")}`);
  failed ||= errors.length > 0;
}
process.exit(failed ? 1 : 0);
