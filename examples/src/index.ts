// The example programs are mpexample.ts (parent), mpprinter.ts and mpcalculator.ts (children).
export { evaluate } from "./calc.js";
