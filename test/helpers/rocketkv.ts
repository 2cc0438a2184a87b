// Runs the CLI from sources (tests spawn it with `node --import tsx`).
import { main } from '../../src/cli/main.ts';

main(process.argv).then((code) => { process.exitCode = code; });
