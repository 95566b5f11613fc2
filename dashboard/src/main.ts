/**
 * The dashboard page. Served by a member's admin port; under `tandem dev` it watches the whole
 * cluster through the launcher's controls (every member's status, process state, fault
 * buttons), otherwise the cluster as the serving member sees it. Updates over server-sent events.
 */
import { LiveChart } from './charts';
import {
  type Card,
  type ClusterView,
  CommitClock,
  type DevState,
  formatMs,
  type MemberState,
  type TimelineEvent,
  viewFromDev,
  viewFromMember,
} from './model';
import './style.css';

/** Timeline entries shown, newest first. */
const TIMELINE_SHOWN_MAX = 200;
/** Charts take a point at most this often. */
const CHART_INTERVAL_MS = 1000;
/** How long to wait for `tandem dev`'s controls before showing this member's view. */
const CONTROLS_WAIT_MS = 3000;
const DEV_ACTIONS = ['kill', 'pause', 'resume', 'restart', 'partition', 'heal'] as const;
const OPERATOR_OPS = [
  ['promote', 'promote'],
  ['demote', 'demote'],
  ['standby', 'make standby'],
  ['move-leader', 'move leader here'],
] as const;

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

let devControls: string | null = null;
let servedBy = '';
const clock = new CommitClock();
const cardElements = new Map<string, HTMLElement>();
const zoneElements = new Map<string, HTMLElement>();
let charts: { key: string; list: LiveChart[] } | null = null;
let lastChartMs = 0;

async function main(): Promise<void> {
  let first: MemberState;
  try {
    first = (await getJson('/dashboard/api/state')) as MemberState;
  } catch (error) {
    setConnection(false, `cannot read this member's state: ${(error as Error).message}`);
    return;
  }
  servedBy = first.status.name;
  if (first.devControls !== null && (await reachable(first.devControls))) {
    devControls = first.devControls;
    $('dev-bar').hidden = false;
    $('view-note').textContent =
      `served by ${servedBy}; every member as tandem dev sees them (fault buttons work on this machine only)`;
    listen(`${devControls}/dev/stream`, (data) => renderDev(data as DevState));
  } else {
    $('view-note').textContent =
      `the cluster as ${servedBy} sees it (open another member's /dashboard/ for its own view)`;
    listen('/dashboard/api/stream', (data) => renderMember(data as MemberState));
  }
  setupKeys();
  $('load-button').addEventListener('click', () => {
    void post(`${devControls}/dev/load`, { seconds: 15 });
  });
  window.addEventListener('resize', () => {
    for (const c of charts?.list ?? []) c.resize($('charts'));
  });
}

function listen(url: string, onData: (data: unknown) => void): void {
  const source = new EventSource(url);
  source.onopen = () => setConnection(true);
  source.onerror = () => setConnection(false, 'reconnecting…');
  source.onmessage = (message: MessageEvent<string>) => onData(JSON.parse(message.data));
}

async function reachable(base: string): Promise<boolean> {
  try {
    await getJson(`${base}/dev/state`, CONTROLS_WAIT_MS);
    return true;
  } catch {
    return false;
  }
}

function setConnection(live: boolean, text?: string): void {
  const el = $('connection');
  el.textContent = live ? 'live' : (text ?? 'disconnected');
  el.classList.toggle('bad', !live);
}

// ---------------------------------------------------------------------------------------------
// Topology

function renderDev(dev: DevState): void {
  const now = Date.now();
  const view = viewFromDev(dev, clock, now);
  renderView(view);
  appendTimeline(dev.timeline);
  const load = dev.load;
  $('load-state').textContent =
    load === null
      ? ''
      : `${load.running ? 'load running' : 'last load'}: ${load.ops} operations, ${load.errors} failed`;
  ($('load-button') as HTMLButtonElement).disabled = load?.running === true;
  const names = dev.members.map((m) => m.name);
  chartPoint(
    now,
    names,
    names.map((n) => dev.members.find((m) => m.name === n)?.dashboard?.stats ?? null),
    view,
  );
}

function renderMember(state: MemberState): void {
  const now = Date.now();
  const view = viewFromMember(state.status, clock, now);
  renderView(view);
  appendTimeline(state.events.items.map((e) => ({ ...e, source: state.status.name })));
  chartPoint(now, [state.status.name], [state.stats], view);
}

function renderView(view: ClusterView): void {
  const voters =
    view.voters === null
      ? ''
      : ` · voters ${view.voters}${view.configuredVoters === null ? '' : ` of ${view.configuredVoters} configured`}`;
  $('summary').textContent =
    `leader ${view.leader ?? 'none'}${view.term === null ? '' : ` · term ${view.term}`}${voters}`;
  $('summary').classList.toggle(
    'bad',
    view.leader === null || (view.voters ?? 0) < (view.configuredVoters ?? 0),
  );
  const topology = $('topology');
  for (const zone of view.zones) {
    if (zoneElements.has(zone)) continue;
    const el = document.createElement('div');
    el.className = 'zone';
    el.dataset.zone = zone;
    el.innerHTML = '<h3></h3><div class="cards"></div>';
    el.querySelector('h3')!.textContent = `zone ${zone}`;
    topology.append(el);
    zoneElements.set(zone, el);
  }
  for (const card of view.cards) {
    let el = cardElements.get(card.name);
    if (el === undefined) {
      el = newCard(card.name);
      cardElements.set(card.name, el);
    }
    const cards = zoneElements.get(card.zone)!.querySelector('.cards')!;
    if (el.parentElement !== cards) cards.append(el);
    updateCard(el, card);
  }
}

function newCard(name: string): HTMLElement {
  const el = document.createElement('article');
  el.className = 'card';
  el.dataset.member = name;
  el.innerHTML = `
    <header>
      <strong class="name"></strong>
      <span class="leader-mark" data-testid="leader-mark" hidden>★ leader</span>
      <span class="role" data-testid="role"></span>
    </header>
    <dl>
      <dt>term</dt><dd data-field="term"></dd>
      <dt>commit / applied</dt><dd data-field="indexes"></dd>
      <dt>lag</dt><dd data-field="lag"></dd>
      <dt>health</dt><dd data-field="health"></dd>
      <dt class="staleness">standby staleness</dt><dd class="staleness" data-field="staleness"></dd>
    </dl>
    <div class="actions"></div>`;
  el.querySelector('.name')!.textContent = name;
  const actions = el.querySelector('.actions')!;
  if (devControls !== null) {
    for (const action of DEV_ACTIONS) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = action;
      b.dataset.action = action;
      b.addEventListener('click', () => {
        void post(`${devControls}/dev/members/${encodeURIComponent(name)}/${action}`, {});
      });
      actions.append(b);
    }
  }
  const select = document.createElement('select');
  select.setAttribute('aria-label', `operator action on ${name}`);
  select.innerHTML = '<option value="">operator…</option>';
  for (const [op, label] of OPERATOR_OPS) select.add(new Option(label, op));
  select.addEventListener('change', () => {
    const op = select.value;
    select.value = '';
    if (op !== '') void operatorOp(op, name);
  });
  actions.append(select);
  return el;
}

function updateCard(el: HTMLElement, c: Card): void {
  el.dataset.role = c.roleLabel;
  el.dataset.leader = String(c.isLeader);
  el.dataset.process = c.process;
  el.classList.toggle('leader', c.isLeader);
  el.classList.toggle('down', c.process === 'down' || c.process === 'paused');
  el.classList.toggle('stale', !c.answered);
  (el.querySelector('.leader-mark') as HTMLElement).hidden = !c.isLeader;
  el.querySelector('.role')!.textContent =
    c.roleLabel +
    (c.process === 'paused' ? ' · paused' : c.process === 'down' ? ' · down' : '') +
    (c.partitioned ? ' · partitioned' : '');
  set(el, 'term', c.term === null ? '–' : String(c.term));
  set(el, 'indexes', c.commitIndex === null ? '–' : `${c.commitIndex} / ${c.appliedIndex ?? '–'}`);
  set(
    el,
    'lag',
    c.lagEntries === null
      ? '–'
      : `${c.lagEntries} entries${c.lagMs === null ? '' : ` · ≈${formatMs(c.lagMs)}`}`,
  );
  set(el, 'health', c.health);
  const stale = c.stalenessSeconds !== null;
  for (const s of el.querySelectorAll<HTMLElement>('.staleness')) s.hidden = !stale;
  if (stale) set(el, 'staleness', formatMs(c.stalenessSeconds! * 1000));
  const health = el.querySelector<HTMLElement>('[data-field="health"]')!;
  health.className = c.health === 'healthy' ? 'ok' : c.health === 'unknown' ? '' : 'bad';
  const buttons = el.querySelectorAll<HTMLButtonElement>('button[data-action]');
  for (const b of buttons) b.disabled = !devActionApplies(b.dataset.action!, c);
}

function devActionApplies(action: string, c: Card): boolean {
  switch (action) {
    case 'kill':
      return c.process === 'running' || c.process === 'paused';
    case 'pause':
      return c.process === 'running';
    case 'resume':
      return c.process === 'paused';
    case 'restart':
      return true;
    case 'partition':
      return c.process === 'running' && !c.partitioned;
    case 'heal':
      return c.process === 'running' && c.partitioned;
    default:
      return false;
  }
}

function set(el: HTMLElement, field: string, text: string): void {
  const dd = el.querySelector(`[data-field="${field}"]`)!;
  if (dd.textContent !== text) dd.textContent = text;
}

async function operatorOp(op: string, name: string): Promise<void> {
  if (devControls !== null) {
    await post(`${devControls}/dev/op`, { op, name });
    return;
  }
  await post(op === 'move-leader' ? '/leader/move' : `/member/${op}`, { name });
}

async function post(url: string, body: unknown): Promise<void> {
  const result = $('action-result');
  result.textContent = '…';
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const answer = (await res.json().catch(() => ({}))) as {
      text?: string;
      reason?: string;
      error?: string;
      code?: string;
    };
    if (res.status === 421) {
      result.textContent = `${servedBy} is not the leader: open the leader's dashboard for this`;
    } else {
      result.textContent = res.ok
        ? (answer.text ?? answer.reason ?? 'done')
        : `refused: ${answer.error ?? res.statusText}`;
    }
  } catch (error) {
    result.textContent = `failed: ${(error as Error).message}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Timeline

function appendTimeline(events: readonly TimelineEvent[]): void {
  if (events.length === 0) return;
  const list = $('timeline');
  for (const e of events) {
    const li = document.createElement('li');
    li.dataset.kind = e.kind;
    li.className = `event ${e.kind}`;
    const time = new Date(e.atMs).toLocaleTimeString([], { hour12: false });
    li.innerHTML =
      '<time></time> <span class="source"></span> <span class="kind"></span> <span class="text"></span>';
    li.querySelector('time')!.textContent = time;
    li.querySelector('.source')!.textContent = e.source;
    li.querySelector('.kind')!.textContent = e.kind;
    li.querySelector('.text')!.textContent = e.text;
    if (e.failoverMs !== undefined) {
      const took = document.createElement('strong');
      took.className = 'failover';
      // The launcher's: from its fault to a new leader; a member's: its time without a leader
      // (a leader transfer's is short, a failover's includes noticing the old leader gone).
      took.textContent =
        e.kind === 'failover'
          ? ` failover ${formatMs(e.failoverMs)}`
          : ` ${formatMs(e.failoverMs)} without a leader`;
      li.append(took);
    }
    list.prepend(li);
  }
  while (list.children.length > TIMELINE_SHOWN_MAX) list.lastElementChild!.remove();
}

// ---------------------------------------------------------------------------------------------
// Charts

function chartPoint(
  nowMs: number,
  names: readonly string[],
  stats: readonly (MemberState['stats'] | null)[],
  view: ClusterView,
): void {
  if (nowMs - lastChartMs < CHART_INTERVAL_MS) return;
  lastChartMs = nowMs;
  const key = names.join(',');
  if (charts === null || charts.key !== key) {
    for (const c of charts?.list ?? []) c.destroy();
    const parent = $('charts');
    charts = {
      key,
      list: [
        new LiveChart(parent, {
          title: 'Client requests',
          unit: 'per second',
          series: ['writes', 'reads'],
        }),
        new LiveChart(parent, { title: 'p99 latency', unit: 'ms', series: names }),
        new LiveChart(parent, { title: 'Replication lag', unit: 'entries', series: names }),
        new LiveChart(parent, { title: 'Event-loop delay', unit: 'ms', series: names }),
      ],
    };
  }
  const [requests, latency, lag, loop] = charts.list;
  const sum = (pick: (s: MemberState['stats']) => number) =>
    stats.reduce((total, s) => total + (s === null ? 0 : pick(s)), 0);
  requests!.push(nowMs, [sum((s) => s.writesPerSecond), sum((s) => s.readsPerSecond)]);
  latency!.push(
    nowMs,
    stats.map((s) => s?.latencyP99Ms ?? null),
  );
  lag!.push(
    nowMs,
    names.map((n) => view.cards.find((c) => c.name === n)?.lagEntries ?? null),
  );
  loop!.push(
    nowMs,
    stats.map((s) => s?.eventLoopDelayMs ?? null),
  );
}

// ---------------------------------------------------------------------------------------------
// Keys

interface ShownKv {
  key: string;
  value: string;
  valueBytes: number;
  truncated: boolean;
  createRevision: number;
  modRevision: number;
  version: number;
}

function setupKeys(): void {
  $('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    void searchKeys(($('key-prefix') as HTMLInputElement).value);
  });
}

async function searchKeys(prefix: string): Promise<void> {
  const note = $('key-note');
  const list = $('key-list');
  list.replaceChildren();
  $('key-detail').replaceChildren();
  try {
    const r = (await getJson(
      `/dashboard/api/kv?prefix=${encodeURIComponent(prefix)}&limit=100`,
    )) as {
      revision: number;
      more: boolean;
      kvs: ShownKv[];
    };
    note.textContent = `${r.kvs.length}${r.more ? '+' : ''} keys at revision ${r.revision}, as ${servedBy} has them`;
    for (const kv of r.kvs) {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'link';
      b.textContent = kv.key;
      b.addEventListener('click', () => void showKey(kv.key));
      const v = document.createElement('span');
      v.className = 'value';
      v.textContent = kv.value + (kv.truncated ? '…' : '');
      li.append(b, ' ', v);
      list.append(li);
    }
  } catch (error) {
    note.textContent = `cannot list keys: ${(error as Error).message}`;
  }
}

async function showKey(key: string): Promise<void> {
  const detail = $('key-detail');
  detail.replaceChildren();
  try {
    const h = (await getJson(`/dashboard/api/history?key=${encodeURIComponent(key)}`)) as {
      key: string;
      versions: ShownKv[];
      compactedBefore: number | null;
    };
    const title = document.createElement('h3');
    title.textContent = key;
    const table = document.createElement('table');
    table.innerHTML =
      '<thead><tr><th>revision</th><th>version</th><th>value</th></tr></thead><tbody></tbody>';
    for (const v of h.versions) {
      const tr = document.createElement('tr');
      for (const text of [
        String(v.modRevision),
        String(v.version),
        v.value + (v.truncated ? '…' : ''),
      ]) {
        const td = document.createElement('td');
        td.textContent = text;
        tr.append(td);
      }
      table.tBodies[0]!.append(tr);
    }
    detail.append(title, table);
    if (h.compactedBefore !== null) {
      const p = document.createElement('p');
      p.className = 'note';
      p.textContent = `older revisions compacted (before ${h.compactedBefore})`;
      detail.append(p);
    }
  } catch (error) {
    detail.textContent = `cannot read ${key}: ${(error as Error).message}`;
  }
}

async function getJson(url: string, timeoutMs = 5000): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const body = (await res.json()) as { error?: string };
  if (!res.ok) throw new Error(body.error ?? `HTTP ${res.status}`);
  return body;
}

void main();
