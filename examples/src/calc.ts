/**
 * A tiny arithmetic evaluator for the example calculator: integers and decimals, + - * / and
 * parentheses, usual precedence. No `eval`: equations come from another process.
 */
export function evaluate(eqn: string): number {
  const tokens = eqn.match(/\d+(?:\.\d+)?|[-+*/()]|\S/g) ?? [];
  let i = 0;
  const peek = (): string | undefined => tokens[i];
  const take = (): string => {
    const t = tokens[i++];
    if (t === undefined) throw new Error(`unexpected end of equation "${eqn}"`);
    return t;
  };
  const primary = (): number => {
    const t = take();
    if (t === "(") {
      const v = sum();
      if (take() !== ")") throw new Error(`missing ")" in "${eqn}"`);
      return v;
    }
    if (t === "-") return -primary();
    if (t === "+") return primary();
    if (/^\d/.test(t)) return Number(t);
    throw new Error(`unexpected "${t}" in "${eqn}"`);
  };
  const product = (): number => {
    let v = primary();
    for (let t = peek(); t === "*" || t === "/"; t = peek()) {
      take();
      v = t === "*" ? v * primary() : v / primary();
    }
    return v;
  };
  const sum = (): number => {
    let v = product();
    for (let t = peek(); t === "+" || t === "-"; t = peek()) {
      take();
      v = t === "+" ? v + product() : v - product();
    }
    return v;
  };
  const v = sum();
  if (i !== tokens.length) throw new Error(`unexpected "${tokens[i]}" in "${eqn}"`);
  return v;
}
