// Screens: login, worklist (projects → studies), viewer. Hash routes:
//   #/login   #/   #/p/{project}/s/{study}
import './style.css';
import { api, dicomweb, h, HttpError, str } from './api';

export interface Me {
  username: string;
  superuser: boolean;
  projects: { id: number; name: string; role: string }[];
}

const app = document.getElementById('app') as HTMLElement;
let cleanup: (() => void) | null = null;

function go(hash: string) {
  if (location.hash === hash) void route();
  else location.hash = hash;
}

function header(me: Me | null): HTMLElement {
  const bar = h('header', { class: 'top' }, h('a', { href: '#/', class: 'brand' }, 'Bedside annotate'));
  if (me) {
    const out = h('button', { id: 'logout' }, 'Sign out');
    out.onclick = async () => {
      await api('POST', '/logout').catch(() => undefined);
      go('#/login');
    };
    bar.append(h('span', { class: 'spacer' }), h('span', { id: 'whoami' }, me.username), out);
  }
  return bar;
}

function loginScreen() {
  const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: '' });
  const pass = h('input', {
    id: 'password',
    name: 'password',
    type: 'password',
    autocomplete: 'current-password',
    required: '',
  });
  const msg = h('p', { id: 'login-error', class: 'error' });
  const form = h(
    'form',
    { id: 'login', class: 'card' },
    h('h2', {}, 'Sign in'),
    h('label', {}, 'User name', user),
    h('label', {}, 'Password', pass),
    h('button', { type: 'submit' }, 'Sign in'),
    msg,
  );
  form.onsubmit = async (e) => {
    e.preventDefault();
    msg.textContent = '';
    try {
      await api('POST', '/login', { username: user.value, password: pass.value });
      go('#/');
    } catch (err) {
      msg.textContent = err instanceof HttpError ? err.message : String(err);
    }
  };
  app.replaceChildren(header(null), h('main', { class: 'center' }, form));
  user.focus();
}

interface ProjectStudy {
  study_instance_uid: string;
  seq: number;
  assignees: string[];
}

async function worklist(me: Me) {
  const main = h('main', { id: 'worklist' }, h('h2', {}, 'Worklist'));
  app.replaceChildren(header(me), main);
  if (me.projects.length === 0) {
    main.append(h('p', {}, 'You are not a member of any project yet.'));
    return;
  }
  // One QIDO search gives the patient and study columns of every study this user may read.
  const qido = await dicomweb('/studies?includefield=00081030,00080060').catch(() => []);
  const byUid = new Map(qido.map((s) => [str(s, '0020000D'), s]));
  for (const p of me.projects) {
    const section = h('section', { class: 'project', 'data-project': String(p.id) });
    section.append(h('h3', {}, `${p.name} `, h('span', { class: 'role' }, p.role)));
    const studies = await api<ProjectStudy[]>('GET', `/projects/${p.id}/studies`).catch(() => []);
    if (studies.length === 0) {
      section.append(h('p', {}, 'No study assigned.'));
    } else {
      const table = h(
        'table',
        { class: 'studies' },
        h(
          'tr',
          {},
          ...['Patient', 'Date', 'Description', 'Modality', 'Instances', 'Changes', 'Assigned'].map((t) =>
            h('th', {}, t),
          ),
        ),
      );
      for (const s of studies) {
        const q = byUid.get(s.study_instance_uid);
        const row = h(
          'tr',
          { class: 'study', 'data-study': s.study_instance_uid, tabindex: '0' },
          h('td', {}, str(q, '00100020') || s.study_instance_uid),
          h('td', {}, str(q, '00080020')),
          h('td', {}, str(q, '00081030')),
          h('td', {}, (q?.['00080061']?.Value ?? []).join(', ')),
          h('td', {}, str(q, '00201208')),
          h('td', {}, String(s.seq)),
          h('td', {}, s.assignees.join(', ')),
        );
        const open = () => go(`#/p/${p.id}/s/${s.study_instance_uid}`);
        row.onclick = open;
        row.onkeydown = (e) => {
          if (e.key === 'Enter') open();
        };
        table.append(row);
      }
      section.append(table);
    }
    main.append(section);
  }
}

async function route() {
  cleanup?.();
  cleanup = null;
  const hash = location.hash || '#/';
  if (hash === '#/login') {
    loginScreen();
    return;
  }
  let me: Me;
  try {
    me = await api<Me>('GET', '/me');
  } catch (err) {
    if (err instanceof HttpError && err.status === 401) {
      go('#/login');
      return;
    }
    app.replaceChildren(h('p', { class: 'error' }, String(err)));
    return;
  }
  const m = hash.match(/^#\/p\/(\d+)\/s\/([0-9.]+)$/);
  if (m) {
    app.replaceChildren(header(me), h('p', { id: 'loading' }, 'Loading…'));
    const { openViewer } = await import('./viewer');
    const main = h('main', { id: 'viewer-screen' });
    app.replaceChildren(header(me), main);
    try {
      cleanup = await openViewer(main, me, Number(m[1]), m[2]);
    } catch (err) {
      main.append(h('p', { class: 'error' }, `Cannot open the study: ${String(err)}`));
    }
    return;
  }
  await worklist(me);
}

window.addEventListener('hashchange', () => void route());
void route();
