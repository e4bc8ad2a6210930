/**
 * Output of a benchmark run. Results go to standard output as Markdown tables, so a run can be
 * pasted into docs/benchmarks.md; progress lines go to standard error.
 */

const runStartedAt = Date.now();

/** Writes a progress line to standard error, prefixed with the seconds since the run started. */
export function progress(message: string): void {
  const elapsed = ((Date.now() - runStartedAt) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[${elapsed}s] ${message}\n`);
}

/** A Markdown table with a heading and notes under it. */
export class Table {
  private readonly rows: string[][] = [];
  private readonly notes: string[] = [];

  constructor(
    private readonly title: string,
    private readonly headers: string[],
  ) {}

  add(...cells: string[]): void {
    if (cells.length !== this.headers.length) {
      throw new Error(`table "${this.title}" has ${this.headers.length} columns, got a row of ${cells.length}`);
    }
    this.rows.push(cells);
  }

  note(text: string): void {
    this.notes.push(text);
  }

  toString(): string {
    const widths = this.headers.map((header, column) =>
      Math.max(header.length, ...this.rows.map((row) => (row[column] ?? '').length)),
    );
    const line = (cells: string[]) => `| ${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join(' | ')} |`;
    const separator = `|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`;
    const parts = [`#### ${this.title}`, '', line(this.headers), separator, ...this.rows.map(line)];
    if (this.notes.length > 0) parts.push('', ...this.notes.map((note) => `- ${note}`));
    return `${parts.join('\n')}\n`;
  }
}

/** Writes text to standard output. */
export function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}
