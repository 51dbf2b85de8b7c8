// Links an event carried (a change's, an incident's), opened in a new tab.
export function LinkList({ links }: { links: readonly { href: string; text?: string | null }[] }) {
  if (!links.length) return null;
  return (
    <ul className="links">
      {links.map((link, index) => (
        <li key={index}>
          <a href={link.href} target="_blank" rel="noreferrer">
            {link.text || link.href}
          </a>
        </li>
      ))}
    </ul>
  );
}
