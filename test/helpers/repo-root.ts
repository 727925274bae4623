import { fileURLToPath } from 'node:url';

/**
 * The repository's root directory, with a trailing slash, whether this file runs as source (test/helpers/)
 * or compiled (dist/test/helpers/, as the benchmarks do on Node).
 */
export const repoRoot: string = fileURLToPath(new URL('.', import.meta.url)).replace(/(dist\/)?test\/helpers\/$/, '');
