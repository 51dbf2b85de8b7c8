import { useEffect, useRef } from "react";
import { Link, NavLink, Navigate, Route, Routes, useLocation } from "react-router";
import { ApprovalsProvider, useApprovals } from "./api/approvals";
import { ClientsProvider, useAuth } from "./auth";
import { ConnectionBadge } from "./components/ConnectionBadge";
import { Empty } from "./components/States";
import { SignIn } from "./pages/SignIn";
import { ApprovalsPage } from "./pages/Approvals";
import { IncidentPage } from "./pages/Incident";
import { IncidentsPage } from "./pages/Incidents";
import { PoliciesPage } from "./pages/Policies";
import { RunPage } from "./pages/Run";
import { RunsPage } from "./pages/Runs";
import { TimelinePage } from "./pages/Timeline";
import { ViewerProvider, useViewer } from "./viewer";
import { useTitle } from "./title";

const NAV = [
  { to: "/timeline", label: "Timeline" },
  { to: "/incidents", label: "Incidents" },
  { to: "/runs", label: "Runs" },
  { to: "/approvals", label: "Approvals" },
  { to: "/policies", label: "Policies" },
];

function Header() {
  const { signOut } = useAuth();
  const viewer = useViewer();
  const { pending } = useApprovals();
  const nav = useRef<HTMLElement>(null);
  const { pathname } = useLocation();
  // On a phone the nav scrolls sideways: keep the current page's link in view.
  useEffect(() => {
    nav.current?.querySelector(".active")?.scrollIntoView({ block: "nearest", inline: "nearest" });
  }, [pathname]);
  return (
    <header className="topbar">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <Link to="/timeline" className="brand" aria-label="Opsgraph home">
        <span className="brand-mark" aria-hidden="true" />
        <span className="brand-name">Opsgraph</span>
      </Link>
      <nav className="nav" aria-label="Main" ref={nav}>
        {NAV.map((item) => (
          <NavLink key={item.to} to={item.to} className="nav-link">
            {item.label}
            {item.to === "/approvals" && pending.length ? (
              <span className="nav-count" aria-label={`${pending.length} pending`}>
                {pending.length}
              </span>
            ) : null}
          </NavLink>
        ))}
      </nav>
      <div className="topbar-right">
        <ConnectionBadge />
        <span
          className="who"
          title={`Workspace ${viewer.workspace.name} · scopes ${viewer.scopes.join(", ")}`}
        >
          {viewer.name}
        </span>
        <button type="button" className="button button-small" onClick={() => signOut()}>
          Sign out
        </button>
      </div>
    </header>
  );
}

function NotFound() {
  useTitle("Not found");
  return (
    <main className="page" id="main">
      <h1 className="visually-hidden">Not found</h1>
      <Empty title="No such page.">
        <NavLink to="/timeline">Go to the timeline</NavLink>
      </Empty>
    </main>
  );
}

export function App() {
  const { apiKey } = useAuth();
  if (!apiKey) return <SignIn />;
  return (
    <ClientsProvider apiKey={apiKey}>
      <ViewerProvider>
        <ApprovalsProvider>
          <Header />
          <Routes>
            <Route path="/" element={<Navigate to="/timeline" replace />} />
            <Route path="/timeline" element={<TimelinePage />} />
            <Route path="/incidents" element={<IncidentsPage />} />
            <Route path="/incidents/:id" element={<IncidentPage />} />
            <Route path="/runs" element={<RunsPage />} />
            <Route path="/runs/:id" element={<RunPage />} />
            <Route path="/approvals" element={<ApprovalsPage />} />
            <Route path="/policies" element={<PoliciesPage />} />
            <Route path="*" element={<NotFound />} />
          </Routes>
        </ApprovalsProvider>
      </ViewerProvider>
    </ClientsProvider>
  );
}
