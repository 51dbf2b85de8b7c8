import type { ReactNode } from "react";

// Senders write any text as a link's href. Only a web or mail address becomes a link: a
// `javascript:` or `data:` one would run or show what a sender chose in the reader's session,
// and a relative one would open a page of Opsgraph itself. The rest is shown as text.
const LINKABLE = new Set(["http:", "https:", "mailto:"]);

function linkable(href: string): boolean {
  try {
    return LINKABLE.has(new URL(href).protocol);
  } catch {
    return false; // not an absolute URL
  }
}

// `children` as a link to `href`, opened in a new tab, when `href` is one to follow;
// otherwise `children` as text, and `href` beside it (when `showHref`) and in its title.
export function SenderLink({
  href,
  children,
  showHref = false,
}: {
  href: string | null | undefined;
  children: ReactNode;
  showHref?: boolean;
}) {
  if (href && linkable(href)) {
    return (
      <a href={href} target="_blank" rel="noreferrer">
        {children}
      </a>
    );
  }
  if (!href) return <>{children}</>;
  return (
    <span title={href}>
      {children}
      {showHref ? ` (${href})` : null}
    </span>
  );
}

// Links an event carried (a change's, an incident's).
export function LinkList({ links }: { links: readonly { href: string; text?: string | null }[] }) {
  if (!links.length) return null;
  return (
    <ul className="links">
      {links.map((link, index) => (
        <li key={index}>
          <SenderLink href={link.href} showHref={Boolean(link.text)}>
            {link.text || link.href}
          </SenderLink>
        </li>
      ))}
    </ul>
  );
}
