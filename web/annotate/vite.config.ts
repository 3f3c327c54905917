import { defineConfig, type Plugin } from 'vite';

// Parts of Cornerstone3D this interface never uses, replaced by stubs to keep the bundle (which
// is committed and embedded in the binary) small: the compute worker (segmentation statistics,
// contour generation; ~2.9 MB) and the JPEG XL decoder (~1.1 MB of WebAssembly).
function stubs(): Plugin {
  return {
    name: 'bedside-stubs',
    enforce: 'pre',
    load(id) {
      const path = id.split('?')[0].replace(/\\/g, '/');
      if (path.endsWith('@cornerstonejs/tools/dist/esm/utilities/registerComputeWorker.js')) {
        return 'export function registerComputeWorker() { throw new Error("the compute worker is not bundled"); }';
      }
      if (path.endsWith('@cornerstonejs/dicom-image-loader/dist/esm/shared/decoders/decodeJPEGXL.js')) {
        return 'export function initialize() { return Promise.reject(new Error("JPEG XL is not supported")); }\n' +
          'export default async function decodeAsync() { throw new Error("JPEG XL is not supported"); }';
      }
      return null;
    },
  };
}

// The bundle goes next to the Rust crate that embeds it (see scripts/build-web.sh).
export default defineConfig({
  base: '/',
  plugins: [stubs()],
  build: {
    outDir: '../../crates/bedside-annotate/web-dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 5000,
    reportCompressedSize: false,
  },
  worker: { format: 'es', plugins: () => [stubs()] },
  optimizeDeps: { exclude: ['@cornerstonejs/dicom-image-loader'] },
  server: {
    // `npm run dev` against a running `bedside annotate serve` on :8042.
    proxy: {
      '/api': { target: 'http://127.0.0.1:8042', ws: true },
      '/dicomweb': 'http://127.0.0.1:8042',
    },
  },
});
