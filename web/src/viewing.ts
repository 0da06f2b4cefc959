/**
 * What the person is looking at besides the notes ("Quiz 1"), for "Who is here": a panel
 * that shows a document calls `useViewing(label)` while it is on screen, and the notes
 * publish the label in their awareness (`viewing`), which people.tsx shows next to the
 * name. Display only: awareness is anyone's to write.
 */
import { createContext } from 'preact'
import { useContext, useEffect } from 'preact/hooks'

/** Sets (a label) or clears (`null`) what this page is looking at. */
export const SetViewing = createContext<(label: string | null) => void>(() => {})

/** Says `label` is on screen while the calling component is mounted. */
export function useViewing (label: string): void {
  const setViewing = useContext(SetViewing)
  useEffect(() => {
    setViewing(label)
    return () => setViewing(null)
  }, [label, setViewing])
}

/** The longest label shown: another client may publish anything. */
export const MAX_VIEWING_LABEL = 60
