// The dashboard: built into dist/dashboard, served by each member at /dashboard/ (src/api/dashboard.ts).
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/dashboard/',
  build: {
    outDir: fileURLToPath(new URL('../dist/dashboard', import.meta.url)),
    emptyOutDir: true,
    // Works offline: everything in the package, nothing fetched from elsewhere.
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 300,
  },
  logLevel: 'warn',
});
