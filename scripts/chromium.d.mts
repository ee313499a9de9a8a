/** Path of the Chromium binary (`CHROMIUM_PATH`, else Debian's `/usr/bin/chromium`). */
export declare const chromiumPath: string;
/** Flags every headless run here needs; add the backend-specific ones after these. */
export declare const chromiumFlags: string[];
