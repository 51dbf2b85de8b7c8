import { useEffect, useRef, useState, type InputHTMLAttributes, type KeyboardEvent } from "react";
import { useQuery } from "urql";
import { useLiveTimeline, type Entry } from "../api/timeline";
import { EntryDetails, EntryList } from "../components/Entries";
import { Empty, ErrorNote, Loading } from "../components/States";
import { graphql } from "../gql";
import type { TimelineKind } from "../gql/graphql";
import { KIND_GROUPS, kindLook } from "../kinds";
import {
  activeCount,
  fromLocalInput,
  NO_FILTER,
  toInput,
  toLocalInput,
  useTimelineFilter,
  type FilterState,
} from "../timelineFilter";
import { useTitle } from "../title";

const ServicesDocument = graphql(`
  query ServiceNames {
    services {
      id
      name
    }
  }
`);

const DEBOUNCE_MS = 400;

/** A text field whose value is committed after a pause in typing (and on Enter or blur). */
function DebouncedInput({
  value,
  onCommit,
  ...props
}: { value: string; onCommit: (value: string) => void } & Omit<
  InputHTMLAttributes<HTMLInputElement>,
  "value" | "onChange"
>) {
  const [draft, setDraft] = useState(value);
  const committed = useRef(value);
  useEffect(() => {
    if (value !== committed.current) {
      committed.current = value;
      setDraft(value);
    }
  }, [value]);
  useEffect(() => {
    if (draft === committed.current) return;
    const timer = setTimeout(() => {
      committed.current = draft;
      onCommit(draft);
    }, DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [draft, onCommit]);
  const commitNow = (): void => {
    if (draft !== committed.current) {
      committed.current = draft;
      onCommit(draft);
    }
  };
  return (
    <input
      {...props}
      value={draft}
      onChange={(event) => setDraft(event.target.value)}
      onBlur={commitNow}
      onKeyDown={(event) => {
        if (event.key === "Enter") commitNow();
      }}
    />
  );
}

const splitList = (text: string): string[] => [
  ...new Set(
    text
      .split(",")
      .map((part) => part.trim())
      .filter(Boolean),
  ),
];

function KindPicker({
  kinds,
  onChange,
}: {
  kinds: TimelineKind[];
  onChange: (kinds: TimelineKind[]) => void;
}) {
  const selected = new Set(kinds);
  const toggle = (kind: TimelineKind): void => {
    const next = new Set(selected);
    if (next.has(kind)) next.delete(kind);
    else next.add(kind);
    onChange([...next]);
  };
  const toggleGroup = (group: TimelineKind[]): void => {
    const all = group.every((kind) => selected.has(kind));
    const next = new Set(selected);
    group.forEach((kind) => (all ? next.delete(kind) : next.add(kind)));
    onChange([...next]);
  };
  // A disclosure closes on Escape (focus back on its button), on a click or tap outside and
  // when focus leaves it.
  const picker = useRef<HTMLDetailsElement>(null);
  useEffect(() => {
    const outside = (event: PointerEvent): void => {
      const details = picker.current;
      if (details?.open && !details.contains(event.target as Node)) details.open = false;
    };
    document.addEventListener("pointerdown", outside);
    return () => document.removeEventListener("pointerdown", outside);
  }, []);
  const escape = (event: KeyboardEvent<HTMLDetailsElement>): void => {
    const details = picker.current;
    if (event.key !== "Escape" || !details?.open) return;
    event.stopPropagation();
    details.open = false;
    details.querySelector("summary")?.focus();
  };
  return (
    <details
      className="picker"
      ref={picker}
      onKeyDown={escape}
      onBlur={(event) => {
        // Tabbing out closes it (a click outside is seen above): it would cover what has focus.
        const to = event.relatedTarget;
        if (to && !event.currentTarget.contains(to)) event.currentTarget.open = false;
      }}
    >
      <summary className="button">Kinds{kinds.length ? ` (${kinds.length})` : ": all"}</summary>
      <div className="picker-panel">
        {KIND_GROUPS.map((group) => {
          const all = group.kinds.every((kind) => selected.has(kind));
          return (
            <fieldset key={group.title} className="picker-group">
              <legend>
                <label>
                  <input type="checkbox" checked={all} onChange={() => toggleGroup(group.kinds)} />
                  {group.title}
                </label>
              </legend>
              {group.kinds.map((kind) => (
                <label key={kind} className="picker-option">
                  <input type="checkbox" checked={selected.has(kind)} onChange={() => toggle(kind)} />
                  <span className={`dot dot-${kindLook(kind).family}`} aria-hidden="true" />
                  {kindLook(kind).label}
                </label>
              ))}
            </fieldset>
          );
        })}
        {kinds.length ? (
          <button type="button" className="button button-small" onClick={() => onChange([])}>
            All kinds
          </button>
        ) : null}
      </div>
    </details>
  );
}

/** One end of the time range, typed in the browser's time zone, kept as an instant. */
function TimeBound({
  label,
  name,
  filter,
  setFilter,
}: {
  label: string;
  name: "since" | "until";
  filter: FilterState;
  setFilter: (next: FilterState) => void;
}) {
  return (
    <label className="field field-inline">
      <span>{label}</span>
      <input
        type="datetime-local"
        name={name}
        value={toLocalInput(filter[name])}
        onChange={(event) => setFilter({ ...filter, [name]: fromLocalInput(event.target.value) })}
      />
    </label>
  );
}

function FilterBar({ filter, setFilter }: { filter: FilterState; setFilter: (next: FilterState) => void }) {
  const [{ data }] = useQuery({ query: ServicesDocument, requestPolicy: "cache-first" });
  const [open, setOpen] = useState(activeCount(filter) > 0);
  const count = activeCount(filter);
  return (
    <section className="filters" aria-label="Filters">
      <div className="filters-top">
        <label className="field field-search">
          <span className="visually-hidden">Search summaries</span>
          <DebouncedInput
            type="search"
            name="q"
            placeholder="Search summaries…"
            value={filter.text}
            onCommit={(text) => setFilter({ ...filter, text: text.trim() })}
          />
        </label>
        <button
          type="button"
          className="button filters-toggle"
          aria-expanded={open}
          aria-controls="filter-fields"
          onClick={() => setOpen(!open)}
        >
          Filters{count ? ` (${count})` : ""}
        </button>
      </div>
      <div id="filter-fields" className={`filters-fields${open ? " is-open" : ""}`}>
        <KindPicker kinds={filter.kinds} onChange={(kinds) => setFilter({ ...filter, kinds })} />
        <label className="field field-inline">
          <span>Service</span>
          <DebouncedInput
            name="service"
            list="service-names"
            placeholder="any"
            value={filter.services.join(", ")}
            onCommit={(text) => setFilter({ ...filter, services: splitList(text) })}
          />
        </label>
        <datalist id="service-names">
          {data?.services.map((service) => (
            <option key={service.id} value={service.name} />
          ))}
        </datalist>
        <label className="field field-inline">
          <span>Environment</span>
          <DebouncedInput
            name="env"
            placeholder="any"
            value={filter.environments.join(", ")}
            onCommit={(text) => setFilter({ ...filter, environments: splitList(text) })}
          />
        </label>
        <label className="field field-inline">
          <span>Labels</span>
          <DebouncedInput
            name="labels"
            placeholder="any"
            value={filter.labels.join(", ")}
            onCommit={(text) => setFilter({ ...filter, labels: splitList(text) })}
          />
        </label>
        <label className="check" title="Entries must carry every label, not just one">
          <input
            type="checkbox"
            checked={filter.matchAll}
            onChange={(event) => setFilter({ ...filter, matchAll: event.target.checked })}
          />
          All labels
        </label>
        <TimeBound label="From" name="since" filter={filter} setFilter={setFilter} />
        <TimeBound label="Until" name="until" filter={filter} setFilter={setFilter} />
        {count || filter.matchAll ? (
          <button
            type="button"
            className="button button-small button-quiet"
            onClick={() => setFilter(NO_FILTER)}
          >
            Clear filters
          </button>
        ) : null}
      </div>
    </section>
  );
}

export function TimelinePage() {
  useTitle("Timeline");
  const [filter, setFilter] = useTimelineFilter();
  const timeline = useLiveTimeline(toInput(filter));
  const [open, setOpen] = useState<Entry | null>(null);
  const filtered = activeCount(filter) > 0;

  return (
    <main className="page" id="main">
      <div className="page-head">
        <h1>Timeline</h1>
        <p className="muted">Changes, incidents and agent actions as they happen, newest first.</p>
      </div>
      <FilterBar filter={filter} setFilter={setFilter} />
      {timeline.liveProblem ? <ErrorNote error={`Live updates stopped: ${timeline.liveProblem}`} /> : null}
      {timeline.error && timeline.entries.length === 0 ? (
        <ErrorNote error={timeline.error} retry={timeline.reload} />
      ) : !timeline.ready ? (
        <Loading what="Loading the timeline" />
      ) : timeline.entries.length === 0 ? (
        <Empty title={filtered ? "Nothing matches these filters yet." : "Nothing has happened yet."}>
          {filtered ? (
            filter.until && Date.parse(filter.until) < Date.now() ? null : (
              <p>New entries that match appear here as they happen.</p>
            )
          ) : (
            <p>
              Post a change with <code>POST /events</code>, an alert with <code>POST /api/events</code> or an
              agent event with <code>POST /v1/events</code>; it shows up here live.
            </p>
          )}
        </Empty>
      ) : (
        <>
          <EntryList
            entries={timeline.entries}
            onOpen={setOpen}
            live={timeline.live}
            label="Timeline entries"
          />
          {timeline.error ? <ErrorNote error={timeline.error} /> : null}
          {timeline.hasNext ? (
            <div className="more">
              <button
                type="button"
                className="button"
                onClick={() => void timeline.loadMore()}
                disabled={timeline.loadingMore}
              >
                {timeline.loadingMore ? "Loading…" : "Load older entries"}
              </button>
            </div>
          ) : (
            <p className="end muted">That is the beginning of the timeline.</p>
          )}
        </>
      )}
      <EntryDetails entry={open} onClose={() => setOpen(null)} />
    </main>
  );
}
