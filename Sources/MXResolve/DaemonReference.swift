/// mxresolved's man page (mdoc) and shell completions, written from the settings table so they name
/// exactly the flags `DaemonCommandLine` accepts. `mxresolved --generate-manual` and
/// `mxresolved --generate-completion-script bash|zsh|fish` print them; scripts/package installs them
/// (the page followed by the hand-written sections of dist/man/mxresolved.8.in).
public enum DaemonReference {
    /// Flags that are no setting, in the order `--help` lists them.
    static let commandFlags: [(flag: String, valueName: String?, help: String)] = [
        ("config", "FILE", "Config file of `key = value` lines."),
        ("dump-config", nil, "Print the settings in effect as a config file, then exit."),
        ("verify-cache", "DIR", "Check the LMDB cache in DIR (STATE_DIR/cache) without changing it, then exit: 0 if sound, 1 if damaged."),
        ("version", nil, "Print the version, then exit."),
        ("help", nil, "Show the options, then exit."),
    ]

    public static let shells = ["bash", "zsh", "fish"]

    /// What a value of `setting` is, for completion.
    enum ValueKind: Equatable {
        case file, group, word([String]), other
    }

    static func valueKind(key: String, valueName: String?) -> ValueKind? {
        guard let valueName else { return nil }
        if key == "log-level" { return .word(DaemonConfig.logLevels) }
        switch valueName {
        case "PATH", "FILE": return .file
        case "GROUP": return .group
        default: return .other
        }
    }

    static var allFlags: [(flag: String, valueName: String?, help: String)] {
        [commandFlags[0]] + DaemonConfig.settings.map { ($0.key, $0.valueName, $0.helpWithDefault) } + commandFlags.dropFirst()
    }

    // MARK: man page

    /// The page up to and including its OPTIONS; `date` as YYYY-MM-DD.
    public static func manual(date: String) -> String {
        var page = """
        .Dd \(date)
        .Dt MXRESOLVED 8
        .Os
        .Sh NAME
        .Nm mxresolved
        .Nd resolve Matrix server names for homeserver workers, with one shared persistent cache
        .Sh SYNOPSIS
        .Nm
        .Op Fl -config Ar FILE
        .Op Fl - Ns Ar KEY Ar VALUE ...
        .Op Fl -dump-config
        .Sh DESCRIPTION
        .Nm
        runs the Server-Server spec's server discovery (well-known delegation, SRV, A/AAAA) for every worker of a
        homeserver that connects to its Unix socket, and keeps the answers in one LMDB cache across restarts.
        .Xr mxresolvectl 1
        queries and manages it.
        .Pp
        Every option below except
        .Fl -config , -dump-config , -version
        and
        .Fl -help
        is also a key of the config file, written
        .Ql key = value ,
        one per line,
        .Ql #
        for comments; repeatable keys repeat. Flags override the file. Without any option the daemon listens on
        .Pa ./.mxresolved/mxresolved.sock
        and keeps its cache in
        .Pa ./.mxresolved/cache .
        .Sh OPTIONS
        .Bl -tag -width Ds

        """
        for (flag, valueName, help) in allFlags {
            page += ".It Fl -\(flag)" + (valueName.map { " Ar \(mdocEscape($0))" } ?? "") + "\n"
            page += mdocEscape(help) + "\n"
        }
        page += ".El\n"
        return page
    }

    /// Text on its own line of an mdoc page: a leading dot or quote would be read as a request,
    /// a backslash as an escape.
    static func mdocEscape(_ text: String) -> String {
        let escaped = text.replacing("\\", with: "\\e")
        return escaped.hasPrefix(".") || escaped.hasPrefix("'") ? "\\&" + escaped : escaped
    }

    // MARK: completions

    public static func completionScript(shell: String) -> String? {
        switch shell {
        case "bash": bashCompletion
        case "zsh": zshCompletion
        case "fish": fishCompletion
        default: nil
        }
    }

    static var bashCompletion: String {
        var cases = ""
        var files: [String] = [], groups: [String] = [], others: [String] = []
        for (flag, valueName, _) in allFlags {
            switch valueKind(key: flag, valueName: valueName) {
            case .file: files.append("--\(flag)")
            case .group: groups.append("--\(flag)")
            case .word(let words): cases += "        --\(flag)) COMPREPLY=($(compgen -W \"\(words.joined(separator: " "))\" -- \"$cur\")); return ;;\n"
            case .other: others.append("--\(flag)")
            case nil: break
            }
        }
        if !files.isEmpty { cases += "        \(files.joined(separator: "|"))) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n" }
        if !groups.isEmpty { cases += "        \(groups.joined(separator: "|"))) COMPREPLY=($(compgen -g -- \"$cur\")); return ;;\n" }
        // A value is due, and nothing can be offered for it.
        if !others.isEmpty { cases += "        \(others.joined(separator: "|"))) return ;;\n" }
        return """
        # bash completion for mxresolved, written by mxresolved --generate-completion-script bash
        _mxresolved() {
            local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
            COMPREPLY=()
            case "$prev" in
        \(cases)    esac
            COMPREPLY=($(compgen -W "\(allFlags.map { "--\($0.flag)" }.joined(separator: " "))" -- "$cur"))
        }
        complete -F _mxresolved mxresolved

        """
    }

    static var zshCompletion: String {
        var specs = ""
        for (flag, valueName, help) in allFlags {
            let description = help.replacing("'", with: "'\\''")
                .replacing("[", with: "\\[").replacing("]", with: "\\]")
                .replacing(":", with: "\\:")
            let action: String
            switch valueKind(key: flag, valueName: valueName) {
            case .file: action = ":\(valueName!):_files"
            case .group: action = ":\(valueName!):_groups"
            case .word(let words): action = ":\(valueName!):(\(words.joined(separator: " ")))"
            case .other: action = ":\(valueName!): "
            case nil: action = ""
            }
            let repeatable = DaemonConfig.settings.first { $0.key == flag }.map { $0.repeats != .no } ?? false
            specs += "    '\(repeatable ? "*" : "")--\(flag)[\(description)]\(action)' \\\n"
        }
        return """
        #compdef mxresolved
        # zsh completion for mxresolved, written by mxresolved --generate-completion-script zsh
        _arguments -s \\
        \(specs)    && return 0

        """
    }

    static var fishCompletion: String {
        var lines = "# fish completion for mxresolved, written by mxresolved --generate-completion-script fish\n"
        for (flag, valueName, help) in allFlags {
            let description = help.replacing("\\", with: "\\\\").replacing("'", with: "\\'")
            var line = "complete -c mxresolved -l \(flag)"
            switch valueKind(key: flag, valueName: valueName) {
            case .file: line += " -r -F"
            case .group: line += " -x -a '(__fish_complete_groups)'"
            case .word(let words): line += " -x -a '\(words.joined(separator: " "))'"
            case .other: line += " -x"
            case nil: line += " -f"
            }
            lines += line + " -d '\(description)'\n"
        }
        return lines
    }
}
