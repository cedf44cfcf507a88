use trailvault_config::*;
fn main() {
    let base = "[archive]\nbucket = \"trailvault-archive\"\nkms_key_id = \"alias/k\"\n[accounts]\nids=[\"222222222222\"]\nexternal_id=\"ab\"\n";
    for extra in [
        "[[sources]]\nkind = \"per_account\"\nbucket_template = \"a-{account_id}\"\nbogus = 1\n",
        "[[sources]]\nkind = \"per_account\"\nbucket_template = \"a-{account_id}\"\n[[sources]]\nkind = \"organization\"\nbucket = \"org-trail-bucket\"\norg_id = \"o-abc123def4\"\nreader_account_id = \"333333333333\"\nbucket_template = \"x\"\n",
        "[[sources]]\nbucket_template = \"a-{account_id}\"\n",
        "[[sources]]\nkind = \"weird\"\n",
        "[[sources]]\nkind = \"per_account\"\nbucket_template = 5\n",
        "[[sources]]\nkind = \"per_account\"\n",
        "sources = [{kind = \"per_account\", bucket_template = \"a-{account_id}\", x = 1}]\n",
    ] {
        println!("=====\n{}", Config::from_toml_str(&format!("{base}{extra}")).unwrap_err());
    }
}
