import type { Backend } from './backend.js';

export interface RunOptions {
  quick: boolean;
  /** --smoke: fewer iterations still (the test suite's run; the figures mean nothing) */
  smoke?: boolean;
  backends: Backend[];
  /** where SQLite data directories are made */
  dataRoot: string;
  /** progress and summary lines (stderr) */
  log: (line: string) => void;
}

/** One target of DESIGN.md §7, checked against this run's figures. */
export interface TargetCheck {
  what: string;
  value: number;
  /** met when value <= max */
  max?: number;
  /** met when value >= min */
  min?: number;
  met: boolean;
  /** the two measured figures the value is the ratio of, where it is one */
  figures?: Record<string, number>;
}

export function atMost(what: string, value: number, max: number): TargetCheck {
  return { what, value, max, met: value <= max };
}

export function atLeast(what: string, value: number, min: number): TargetCheck {
  return { what, value, min, met: value >= min };
}

/** What one benchmark adds to the report. */
export interface BenchOutput {
  result: Record<string, unknown>;
  targets?: Record<string, TargetCheck>;
}
