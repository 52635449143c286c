//! Tests of the MySQL script splitter and statement classification.

use super::*;

fn split(s: &str) -> Vec<String> {
    split_all(s.as_bytes()).unwrap().into_iter().map(|b| String::from_utf8(b).unwrap()).collect()
}

#[test]
fn splits_mysqldump_constructs() {
    let script = "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump\n/*!40101 SET NAMES utf8mb4 */;\nINSERT INTO `a;b` VALUES (1,'x;y\\';z',\"q\"\"\"),(2,'it''s');\n# c;omment\nDELIMITER ;;\nCREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END ;;\nDELIMITER ;\nSELECT /* ; */ 3;\n-- trailing";
    let got = split(script);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got[0].ends_with("SET NAMES utf8mb4 */"));
    assert!(got[1].starts_with("INSERT INTO `a;b`") && got[1].ends_with("(2,'it''s')"));
    assert_eq!(got[2], "CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END");
    assert_eq!(got[3], "SELECT /* ; */ 3");
}

/// A one-INSERT-per-row dump of 1M rows (~40 MB), pushed whole and in 64 KiB pieces,
/// splits in seconds. The bound is generous (a minute, in a thread): the old splitter shifted
/// its buffer once per statement and needed hours for the whole-buffer push.
#[test]
fn one_insert_per_row_dump_splits_in_linear_time() {
    let mut script = Vec::with_capacity(40 << 20);
    for i in 0..1_000_000u32 {
        script.extend_from_slice(format!("INSERT INTO `t` VALUES ({i},'row {i}; x');\n").as_bytes());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut whole = ScriptSplitter::default();
        let mut n = whole.push(&script).unwrap().len();
        n += whole.finish().unwrap().len();
        let mut pieces = ScriptSplitter::default();
        let mut m = 0;
        let mut last = Vec::new();
        for c in script.chunks(64 << 10) {
            let got = pieces.push(c).unwrap();
            m += got.len();
            if let Some(l) = got.last() {
                last = l.clone();
            }
        }
        m += pieces.finish().unwrap().len();
        let _ = tx.send((n, m, last));
    });
    let (n, m, last) = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("splitting 1M statements took over a minute");
    assert_eq!((n, m), (1_000_000, 1_000_000));
    assert_eq!(last, b"INSERT INTO `t` VALUES (999999,'row 999999; x')".to_vec());
}

/// Splitting `script` in pieces of 1..max bytes gives `whole`.
fn assert_same_in_any_chunking(script: &[u8], whole: &[Vec<u8>], max: usize) {
    for n in 1..max {
        let mut s = ScriptSplitter::default();
        let mut got = Vec::new();
        for c in script.chunks(n) {
            got.extend(s.push(c).unwrap());
        }
        got.extend(s.finish().unwrap());
        assert_eq!(got, whole, "chunk size {n}");
    }
}

#[test]
fn same_result_whatever_the_chunking() {
    let script = b"DELIMITER $$\nCREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW BEGIN SET NEW.a = ';'; END$$\nDELIMITER ;\nINSERT INTO x VALUES ('a\\\\'),('--'); -- c\nSELECT 1";
    let whole = split_all(script).unwrap();
    assert_same_in_any_chunking(script, &whole, 8);
    assert_eq!(whole.len(), 3);
}

/// Fuzz crash of 2026-12-01: a chunk ending in `/*M` was taken for a plain comment before the
/// `!` arrived, so a MariaDB conditional comment split differently by chunking.
#[test]
fn mariadb_conditional_comment_split_across_chunks() {
    let script: &[u8] = b"SELECT 1;\n/*M!100100 SET @a=1; */;\n/*M!2 x*M!2y*\n/ SET b;\n/*M!2 z */ SELECT 2;";
    let whole = split_all(script).unwrap();
    assert_eq!(whole[1], b"/*M!100100 SET @a=1; */".to_vec());
    assert_same_in_any_chunking(script, &whole, 12);
}

#[test]
fn classifies_and_strips() {
    assert_eq!(classify(b"/*!40000 USE `x`*/"), StatementKind::Use);
    assert_eq!(classify(b"USE `x`"), StatementKind::Use);
    assert_eq!(classify(b"SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ 'x'"), StatementKind::SuperOnly);
    assert_eq!(
        classify(b"/*!50106 CREATE*/ /*!50117 DEFINER=`r`@`l`*/ /*!50106 EVENT `e` ON SCHEDULE"),
        StatementKind::CreateEvent
    );
    assert_eq!(classify(b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `d`"), StatementKind::Database);
    assert_eq!(
        strip_definer(b"/*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */"),
        b"/*!50013  SQL SECURITY DEFINER */".to_vec()
    );
    assert_eq!(strip_definer(b"CREATE DEFINER='a'@'%' PROCEDURE p()"), b"CREATE  PROCEDURE p()".to_vec());
}

/// Fuzz crash of 2026-12-01: a long head of non-ASCII bytes was cut inside a char.
#[test]
fn long_non_ascii_head_is_cut_on_a_char_boundary() {
    let stmt = [b"SETS ".as_slice(), &[0xe2; 5000]].concat();
    let h = head(&stmt, 8);
    assert!(h.starts_with("SETS ") && h.len() <= 4096, "{}", h.len());
    assert_eq!(classify(&stmt), StatementKind::Other);
}

#[test]
fn unterminated_string_is_an_error() {
    assert_eq!(split_all(b"SELECT 'abc").unwrap_err(), ScriptError::Unterminated("a string"));
}
