// The annotation API (`/api`) and DICOMweb (`/dicomweb`) of the server that serves this page.
// The session is an HttpOnly cookie; unsafe requests repeat the CSRF cookie in X-CSRF-Token.

export class HttpError extends Error {
  constructor(
    public status: number,
    message: string,
    public body?: unknown,
  ) {
    super(message);
  }
}

export function csrfToken(): string {
  const m = document.cookie.match(/(?:^|;\s*)bedside_csrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : '';
}

async function parse(r: Response): Promise<unknown> {
  const text = await r.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function api<T = any>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrfToken();
  const r = await fetch('/api' + path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await parse(r);
  if (!r.ok) {
    const msg = (data as { error?: string } | null)?.error ?? r.statusText;
    throw new HttpError(r.status, msg, data);
  }
  return data as T;
}

/** A DICOM JSON dataset (PS3.18 F.2). */
export type DicomJson = Record<string, { vr: string; Value?: unknown[]; BulkDataURI?: string }>;

export async function dicomweb(path: string): Promise<DicomJson[]> {
  const r = await fetch('/dicomweb' + path, {
    headers: { Accept: 'application/dicom+json' },
    credentials: 'same-origin',
  });
  if (r.status === 204) return [];
  const data = await parse(r);
  if (!r.ok) throw new HttpError(r.status, `DICOMweb ${path}: ${r.status}`, data);
  return (data as DicomJson[]) ?? [];
}

/** The first value of an attribute (tag as 8 hex digits). */
export function first(ds: DicomJson | undefined, tag: string): unknown {
  return ds?.[tag]?.Value?.[0];
}

export function str(ds: DicomJson | undefined, tag: string): string {
  const v = first(ds, tag);
  if (v === undefined || v === null) return '';
  if (typeof v === 'object' && v !== null && 'Alphabetic' in v) {
    return String((v as { Alphabetic: string }).Alphabetic);
  }
  return String(v);
}

export function num(ds: DicomJson | undefined, tag: string): number | undefined {
  const v = first(ds, tag);
  const n = typeof v === 'number' ? v : typeof v === 'string' ? parseFloat(v) : NaN;
  return Number.isFinite(n) ? n : undefined;
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') el.className = v;
    else el.setAttribute(k, v);
  }
  for (const c of children) el.append(c);
  return el;
}
