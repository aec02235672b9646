// docs/usage.md quotes the compiled samples in examples/src/usage verbatim; this keeps them in sync
// (the samples themselves are type-checked by the build).
import { describe, it, expect } from "vitest";
import { checkUsageDoc } from "../dist/usage/check-docs.js";

describe("docs/usage.md", () => {
  it("quotes every sample file exactly as it is in examples/src/usage", () => {
    expect(checkUsageDoc()).toEqual([]);
  });
});
