package cli

// The completion scripts. Each asks `caisson __complete` (the words of the command line up to the cursor) and
// offers its answer: the candidate words, and the shell's own file, directory or command completion when the first
// line says so. The logic is caisson's, read from the flag definitions; the scripts only adapt it to each shell.
var scripts = map[string]string{"bash": bashScript, "zsh": zshScript, "fish": fishScript}

const bashScript = `# bash completion for caisson (caisson completion bash); load it with: source <(caisson completion bash)
_caisson() {
	local cur words cword
	if declare -F _get_comp_words_by_ref >/dev/null; then
		# bash-completion: words as typed, not split at '=' or ':' (--net=pasta, -p 8080:80)
		_get_comp_words_by_ref -n =: cur words cword
	else
		words=("${COMP_WORDS[@]}") cword=$COMP_CWORD cur=${COMP_WORDS[COMP_CWORD]}
	fi
	local -a out
	mapfile -t out < <("${words[0]}" __complete "${words[@]:1:cword}" 2>/dev/null)
	COMPREPLY=()
	local line
	for line in "${out[@]:1}"; do
		COMPREPLY+=("${line%%$'\t'*}")
	done
	# readline replaces only what follows the last '=' or ':' of the word
	local pre=${cur%"${cur##*[=:]}"}
	if [[ -n $pre && ${#COMPREPLY[@]} -gt 0 ]]; then
		COMPREPLY=("${COMPREPLY[@]#"$pre"}")
	fi
	if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *[=,] ]]; then
		compopt -o nospace 2>/dev/null
	fi
	case ${out[0]} in
	files)
		if declare -F _filedir >/dev/null; then _filedir; else
			compopt -o filenames 2>/dev/null
			mapfile -t -O ${#COMPREPLY[@]} COMPREPLY < <(compgen -f -- "$cur")
		fi ;;
	dirs)
		if declare -F _filedir >/dev/null; then _filedir -d; else
			compopt -o filenames 2>/dev/null
			mapfile -t -O ${#COMPREPLY[@]} COMPREPLY < <(compgen -d -- "$cur")
		fi ;;
	commands)
		mapfile -t -O ${#COMPREPLY[@]} COMPREPLY < <(compgen -c -- "$cur") ;;
	esac
	return 0
}
complete -F _caisson caisson
`

const zshScript = `#compdef caisson
# zsh completion for caisson (caisson completion zsh); load it with: source <(caisson completion zsh) after
# compinit, or save it as _caisson in a directory of $fpath.
_caisson() {
	local -a out vals descs openvals opendescs
	local line v d
	out=("${(@f)$(${(Q)words[1]} __complete "${(@Q)words[2,CURRENT]}" 2>/dev/null)}")
	for line in "${(@)out[2,-1]}"; do
		[[ -z $line ]] && continue
		v=${line%%$'\t'*} d=${line#*$'\t'}
		[[ $line != *$'\t'* ]] && d=
		if [[ $v == *[=,] ]]; then
			openvals+=("$v") opendescs+=("$v${d:+  -- $d}")
		else
			vals+=("$v") descs+=("$v${d:+  -- $d}")
		fi
	done
	(( $#vals )) && compadd -l -Q -d descs -a vals
	(( $#openvals )) && compadd -l -Q -S '' -d opendescs -a openvals
	case ${out[1]} in
	files) _files ;;
	dirs) _files -/ ;;
	commands) _command_names -e ;;
	esac
	return 0
}
if [[ ${funcstack[1]} == _caisson ]]; then
	_caisson "$@"
else
	compdef _caisson caisson
fi
`

const fishScript = `# fish completion for caisson (caisson completion fish); load it with: caisson completion fish | source
function __caisson_complete
	set -l tokens (commandline -opc)
	set -l cur (commandline -ct)
	set -l out (command $tokens[1] __complete $tokens[2..-1] $cur 2>/dev/null)
	test (count $out) -gt 1; and printf '%s\n' $out[2..-1]
	switch "$out[1]"
		case files
			__fish_complete_path $cur
		case dirs
			__fish_complete_directories $cur
		case commands
			__fish_complete_command
	end
end
complete -c caisson -f -a '(__caisson_complete)'
`
