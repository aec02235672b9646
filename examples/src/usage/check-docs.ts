/**
 * Checks that docs/usage.md quotes the files of this folder exactly: every
 * `<!-- quote: examples/src/usage/X.ts -->` line in usage.md must be followed by a ```ts block
 * equal to X.ts without its leading header comment. Run after a build, from anywhere:
 * `node examples/dist/usage/check-docs.js` (exit status 1 and a list of differences otherwise).
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../../", import.meta.url));

/** The file as usage.md quotes it: without the leading block comment, trailing newlines trimmed. */
export function quotedBody(text: string): string {
  let s = text;
  if (s.startsWith("/**")) s = s.slice(s.indexOf("*/") + 2).replace(/^\n+/, "");
  return s.replace(/\n+$/, "");
}

export function checkUsageDoc(): string[] {
  const doc = readFileSync(root + "docs/usage.md", "utf8").split("\n");
  const problems: string[] = [];
  let quotes = 0;
  for (let i = 0; i < doc.length; i++) {
    const m = /^<!-- quote: (\S+) -->$/.exec(doc[i]!);
    if (m === null) continue;
    quotes++;
    const path = m[1]!;
    if (doc[i + 1] !== "```ts") {
      problems.push(`${path}: no \`\`\`ts block after the quote marker (line ${i + 1})`);
      continue;
    }
    const end = doc.indexOf("```", i + 2);
    const block = doc.slice(i + 2, end).join("\n");
    if (block !== quotedBody(readFileSync(root + path, "utf8"))) problems.push(`${path}: usage.md differs from the file`);
  }
  if (quotes === 0) problems.push("docs/usage.md has no quote markers");
  return problems;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const problems = checkUsageDoc();
  for (const p of problems) console.error(p);
  if (problems.length > 0) process.exitCode = 1;
  else console.log("docs/usage.md quotes examples/src/usage exactly");
}
