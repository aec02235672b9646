// docs/testing.md quotes the example of own-interface.test.ts (between its `// example:begin` and
// `// example:end` lines) verbatim; this keeps the two in sync.
// Threading: loop thread (the test's thread).
import { readFileSync } from "node:fs";
import { expect, it } from "vitest";

const read = (rel: string): string => readFileSync(new URL(rel, import.meta.url), "utf8");

it("docs/testing.md quotes the compiled example exactly", () => {
  const lines = read("./own-interface.test.ts").split("\n");
  const begin = lines.indexOf("// example:begin");
  const end = lines.indexOf("// example:end");
  expect(begin).toBeGreaterThanOrEqual(0);
  expect(end).toBeGreaterThan(begin);
  const example = lines.slice(begin + 1, end).join("\n");
  expect(read("../../../docs/testing.md")).toContain("```ts\n" + example + "\n```");
});
