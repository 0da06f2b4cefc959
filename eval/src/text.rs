//! Comparing what the AI wrote with the answer key, on words rather than characters.
//!
//! An answer and a key phrase are both cut into [`tokens`]: lower-case runs of letters or
//! digits, with every other character a separator. So case and punctuation never matter
//! ("AM-3" = "am 3" = "AM3"), numbers compare as numbers ("1,620" = "1620", "09:00" =
//! "9:00", "7.50" = "7.5"), and a phrase matches only whole tokens in order: "148" is not
//! found in "1480", nor "0.4" in "0.46".

/// The tokens of `text`, normalised as the module docs say.
pub fn tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut current = String::new();
    for (index, &ch) in chars.iter().enumerate() {
        let previous = index.checked_sub(1).map(|i| chars[i]);
        let next = chars.get(index + 1).copied();
        if ch.is_alphanumeric() {
            // A letter right after a digit, or a digit right after a letter, starts a new
            // token: "4mm" is "4 mm" and "L3" is "l 3".
            // A decimal point inside `current` belongs to its number.
            if let Some(last) = current.chars().last()
                && (last.is_ascii_digit() || last == '.') != ch.is_ascii_digit()
            {
                push_token(&mut tokens, &mut current);
            }
            current.extend(ch.to_lowercase());
            continue;
        }
        let between_digits = previous.is_some_and(|c| c.is_ascii_digit())
            && next.is_some_and(|c| c.is_ascii_digit())
            && current.chars().all(|c| c.is_ascii_digit() || c == '.');
        if between_digits && ch == '.' && !current.contains('.') {
            // A decimal point.
            current.push('.');
            continue;
        }
        if between_digits && ch == ',' && is_thousands_group(&chars[index + 1..]) {
            // A thousands separator: "1,620" is 1620.
            continue;
        }
        push_token(&mut tokens, &mut current);
    }
    push_token(&mut tokens, &mut current);
    tokens
}

/// Whether `rest` (what follows a comma) starts with exactly three digits.
fn is_thousands_group(rest: &[char]) -> bool {
    rest.len() >= 3
        && rest[..3].iter().all(char::is_ascii_digit)
        && !rest.get(3).is_some_and(char::is_ascii_digit)
}

fn push_token(tokens: &mut Vec<String>, current: &mut String) {
    if current.is_empty() {
        return;
    }
    let token = std::mem::take(current);
    tokens.push(if token.starts_with(|c: char| c.is_ascii_digit()) {
        normalise_number(&token)
    } else {
        token
    });
}

/// "09" → "9", "7.50" → "7.5", "2.0" → "2", "0.46" stays.
fn normalise_number(number: &str) -> String {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        whole.to_owned()
    } else {
        format!("{whole}.{fraction}")
    }
}

/// Whether `needle` occurs in `haystack` as a contiguous run of whole tokens.
pub fn contains_tokens(haystack: &[String], needle: &[String]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// Whether `text` contains `phrase`, token for token.
pub fn contains_phrase(text: &str, phrase: &str) -> bool {
    contains_tokens(&tokens(text), &tokens(phrase))
}

/// For each key fact (a list of acceptable phrasings), whether the answer states it in at
/// least one of them.
pub fn facts_found(answer: &str, key_facts: &[Vec<String>]) -> Vec<bool> {
    let answer = tokens(answer);
    key_facts
        .iter()
        .map(|phrasings| {
            phrasings
                .iter()
                .any(|phrasing| contains_tokens(&answer, &tokens(phrasing)))
        })
        .collect()
}

/// Whether the answer states every key fact.
pub fn all_facts_found(answer: &str, key_facts: &[Vec<String>]) -> bool {
    facts_found(answer, key_facts)
        .into_iter()
        .all(|found| found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(groups: &[&[&str]]) -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|group| group.iter().map(|s| (*s).to_owned()).collect())
            .collect()
    }

    #[test]
    fn case_and_punctuation_do_not_matter() {
        assert!(contains_phrase(
            "The answer: KETTERBY sandstone!",
            "Ketterby Sandstone"
        ));
        assert!(contains_phrase("Station am3, 86 m up.", "AM-3"));
        assert!(contains_phrase("the code is AM 3", "AM-3"));
        assert!(contains_phrase("Code “L3” is cumulonimbus", "L3"));
        assert!(contains_phrase("They don’t cover it", "don't cover"));
    }

    #[test]
    fn numbers_are_normalised() {
        assert!(contains_phrase("a mean of 1620 mm a year", "1,620"));
        assert!(contains_phrase("a mean of 1,620 mm a year", "1620"));
        assert!(contains_phrase("readings at 9:00 GMT", "09:00"));
        assert!(contains_phrase("a lag of 7.50 hours", "7.5 hours"));
        assert!(contains_phrase("only 4mm per hour", "4 mm"));
        assert!(contains_phrase("in 2014, 41% of it", "41"));
        // A comma in a list is not a thousands separator.
        assert_eq!(tokens("1,2,3"), ["1", "2", "3"]);
        assert_eq!(tokens("1,6200"), ["1", "6200"]);
        // A sentence's full stop after a number is not a decimal point.
        assert_eq!(tokens("It was 148. Then"), ["it", "was", "148", "then"]);
    }

    #[test]
    fn only_whole_tokens_match() {
        assert!(!contains_phrase("about 1480 cumecs", "148"));
        assert!(!contains_phrase("an index of 0.4", "0.46"));
        assert!(!contains_phrase("an index of 0.46", "0.4"));
        assert!(!contains_phrase("the orangery", "orange"));
        assert!(!contains_phrase(
            "Ketterby and the sandstone",
            "Ketterby Sandstone"
        ));
        assert!(!contains_phrase("anything", ""));
    }

    #[test]
    fn every_key_fact_must_be_stated_in_one_of_its_phrasings() {
        let key = facts(&[&["1971"], &["9.2 million"]]);
        assert!(all_facts_found(
            "Harl Reservoir was built in 1971 and holds 9.2 million cubic metres.",
            &key
        ));
        assert_eq!(
            facts_found("Harl Reservoir was built in 1971.", &key),
            [true, false]
        );
        assert!(!all_facts_found("It holds 9.2 million m3.", &key));
        let key = facts(&[&["2 June", "June 2", "2nd June"]]);
        assert!(all_facts_found("Due on Friday, June 2.", &key));
        assert!(all_facts_found("Due on the 2nd June.", &key));
        assert!(!all_facts_found("Due on 12 June.", &key));
    }
}
