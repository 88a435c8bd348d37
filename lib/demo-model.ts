// Location of the demo model the npm package ships (models/geb-tiny, 4.9M parameters in GEB's
// format), so code that installed the package can load it without knowing the install folder.

import { fileURLToPath } from "node:url";

/**
 * Absolute path of the bundled demo model directory, for `loadModel` and `loadTokenizer`. Its
 * text is weak by design; it is there so examples and tests run right after install.
 *
 * @example
 * const model = await loadModel(demoModelPath);
 */
export const demoModelPath: string = fileURLToPath(new URL("../models/geb-tiny", import.meta.url));
