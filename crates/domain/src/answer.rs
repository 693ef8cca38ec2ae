//! Answers to survey questions, validated against the question they answer.

use crate::survey::{Question, QuestionKind};
use serde_json::Value;

/// Longest free-text answer, in characters.
pub const MAX_TEXT_LEN: usize = 5000;

/// Why a value is not an answer to a question; each maps to a message the page shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("an answer from {min} to {max} is expected")]
    OutOfRange { min: i64, max: i64 },
    #[error("`{0}` is not one of the options")]
    UnknownOption(String),
    #[error("an option may be chosen only once")]
    RepeatedOption,
    #[error("the answer is empty")]
    Empty,
    #[error("the answer is longer than {MAX_TEXT_LEN} characters")]
    TooLong,
    #[error("the answer has the wrong type: {0} expected")]
    WrongType(&'static str),
}

/// The answer `value` to `question`, normalised (trimmed text, options in the question's
/// order), or why it is not one.
pub fn validate(question: &Question, value: &Value) -> Result<Value, AnswerError> {
    match &question.kind {
        QuestionKind::Nps => integer_in(value, 0, 10),
        QuestionKind::Rating => integer_in(value, 1, 5),
        QuestionKind::Mcq { options } => {
            let choice = value.as_str().ok_or(AnswerError::WrongType("an option"))?;
            if options.iter().any(|o| o == choice) {
                Ok(Value::from(choice))
            } else {
                Err(AnswerError::UnknownOption(choice.to_owned()))
            }
        }
        QuestionKind::Checkbox { options } => {
            let chosen = value
                .as_array()
                .ok_or(AnswerError::WrongType("a list of options"))?;
            let mut names = Vec::with_capacity(chosen.len());
            for c in chosen {
                let name = c
                    .as_str()
                    .ok_or(AnswerError::WrongType("a list of options"))?;
                if !options.iter().any(|o| o == name) {
                    return Err(AnswerError::UnknownOption(name.to_owned()));
                }
                if names.contains(&name) {
                    return Err(AnswerError::RepeatedOption);
                }
                names.push(name);
            }
            if names.is_empty() {
                return Err(AnswerError::Empty);
            }
            Ok(Value::from(
                options
                    .iter()
                    .filter(|o| names.contains(&o.as_str()))
                    .map(|o| Value::from(o.as_str()))
                    .collect::<Vec<_>>(),
            ))
        }
        QuestionKind::Text => {
            let text = value.as_str().ok_or(AnswerError::WrongType("text"))?.trim();
            if text.is_empty() {
                return Err(AnswerError::Empty);
            }
            if text.chars().count() > MAX_TEXT_LEN {
                return Err(AnswerError::TooLong);
            }
            Ok(Value::from(text))
        }
    }
}

fn integer_in(value: &Value, min: i64, max: i64) -> Result<Value, AnswerError> {
    let n = value.as_i64().ok_or(AnswerError::OutOfRange { min, max })?;
    if (min..=max).contains(&n) {
        Ok(Value::from(n))
    } else {
        Err(AnswerError::OutOfRange { min, max })
    }
}

/// The required questions of `questions` that `answered` does not hold, in survey order.
pub fn missing_required<'q>(questions: &'q [Question], answered: &[&str]) -> Vec<&'q str> {
    questions
        .iter()
        .filter(|q| q.required && !answered.contains(&q.id.as_str()))
        .map(|q| q.id.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(kind: QuestionKind, required: bool) -> Question {
        Question {
            id: "q".into(),
            title: "Q".into(),
            required,
            tags: Vec::new(),
            kind,
        }
    }

    fn options() -> Vec<String> {
        vec!["A".into(), "B".into(), "C".into()]
    }

    #[test]
    fn nps_is_an_integer_from_0_to_10_and_rating_from_1_to_5() {
        let nps = q(QuestionKind::Nps, true);
        assert_eq!(validate(&nps, &json!(0)), Ok(json!(0)));
        assert_eq!(validate(&nps, &json!(10)), Ok(json!(10)));
        assert_eq!(
            validate(&nps, &json!(11)),
            Err(AnswerError::OutOfRange { min: 0, max: 10 })
        );
        assert!(validate(&nps, &json!(7.5)).is_err());
        assert!(validate(&nps, &json!("7")).is_err());
        let rating = q(QuestionKind::Rating, true);
        assert!(validate(&rating, &json!(0)).is_err());
        assert_eq!(validate(&rating, &json!(5)), Ok(json!(5)));
    }

    #[test]
    fn choices_must_be_options_and_checkboxes_come_back_in_option_order() {
        let mcq = q(QuestionKind::Mcq { options: options() }, false);
        assert_eq!(validate(&mcq, &json!("B")), Ok(json!("B")));
        assert_eq!(
            validate(&mcq, &json!("Z")),
            Err(AnswerError::UnknownOption("Z".into()))
        );
        let boxes = q(QuestionKind::Checkbox { options: options() }, false);
        assert_eq!(validate(&boxes, &json!(["C", "A"])), Ok(json!(["A", "C"])));
        assert_eq!(
            validate(&boxes, &json!(["A", "A"])),
            Err(AnswerError::RepeatedOption)
        );
        assert_eq!(validate(&boxes, &json!([])), Err(AnswerError::Empty));
        assert!(validate(&boxes, &json!("A")).is_err());
    }

    #[test]
    fn text_is_trimmed_non_empty_and_bounded() {
        let text = q(QuestionKind::Text, false);
        assert_eq!(validate(&text, &json!("  fine  ")), Ok(json!("fine")));
        assert_eq!(validate(&text, &json!("   ")), Err(AnswerError::Empty));
        assert_eq!(
            validate(&text, &json!("x".repeat(MAX_TEXT_LEN + 1))),
            Err(AnswerError::TooLong)
        );
    }

    #[test]
    fn missing_required_lists_unanswered_required_questions_in_order() {
        let mut a = q(QuestionKind::Nps, true);
        a.id = "a".into();
        let mut b = q(QuestionKind::Text, false);
        b.id = "b".into();
        let mut c = q(QuestionKind::Rating, true);
        c.id = "c".into();
        let qs = [a, b, c];
        assert_eq!(missing_required(&qs, &[]), vec!["a", "c"]);
        assert_eq!(missing_required(&qs, &["c", "b"]), vec!["a"]);
    }
}
